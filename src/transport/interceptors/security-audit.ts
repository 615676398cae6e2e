/**
 * Turns refused calls into audit events (observability/security-audit.ts coalesces them):
 * - `unauthenticated` → `auth.failed`, reason from the authenticator (`expired`, `bad_signature`,
 *   `unknown_issuer`, `missing_credentials`...);
 * - `permission_denied` → `policy.denied`, reason from the policy (`RPC_NOT_ALLOWED`...);
 * - a `not_found` that hides a denial (another user's integration) → `policy.denied` as well,
 *   with `details.visible_as = "NOT_FOUND"`: the caller still sees NOT_FOUND;
 * - `rate_limited` → `rate_limit.exceeded`, reason the limit that refused.
 *
 * It sits inside the error-mapping interceptor, so it sees the `BrokerError`s themselves whether
 * authentication, the rate limiter or a handler threw them. The token is never part of an event:
 * only the reason, the method, the caller when known and the peer address are.
 */
import { authFailureReason } from "../../auth/authenticator.js";
import { BrokerError } from "../../domain/errors.js";
import { hiddenDenialOf } from "../../domain/policy.js";
import type { SecurityAuditRecorder, SecurityEvent } from "../../observability/security-audit.js";
import { fullMethodName, type CallContext, type Interceptor } from "../call.js";
import { handleFailures } from "../service-binding.js";

export function createSecurityAuditInterceptor(deps: { recorder: Pick<SecurityAuditRecorder, "record"> }): Interceptor {
  const observe = (call: CallContext, error: unknown): unknown => {
    const event = securityEventOf(call, error);
    if (event !== undefined) deps.recorder.record(event);
    return error;
  };
  return (call, invoke) => handleFailures(call, invoke, (error) => observe(call, error));
}

/** The audit event a refusal leaves, or undefined for every other outcome. */
export function securityEventOf(call: CallContext, error: unknown): SecurityEvent | undefined {
  if (!(error instanceof BrokerError)) return undefined;
  const base = {
    rpc: fullMethodName(call),
    requestId: call.requestId,
    peer: call.peer,
    caller: call.principal?.subject,
    callerKind: call.principal?.kind,
    details: { protocol: call.protocol },
  };
  switch (error.code) {
    case "unauthenticated":
      return { ...base, action: "auth.failed", outcome: "failure", reason: authFailureReason(error) ?? "unauthenticated" };
    case "permission_denied":
      return { ...base, action: "policy.denied", outcome: "denied", reason: error.reason, provider: error.metadata["provider"] };
    case "not_found": {
      const denial = hiddenDenialOf(error);
      if (denial === undefined) return undefined;
      return {
        ...base,
        action: "policy.denied",
        outcome: "denied",
        reason: denial.reason,
        integrationId: denial.integrationId,
        details: { ...base.details, visible_as: "NOT_FOUND" },
      };
    }
    case "rate_limited":
      return { ...base, action: "rate_limit.exceeded", outcome: "denied", reason: error.metadata["limit"] ?? error.reason };
    default:
      return undefined;
  }
}
