/**
 * How a failed flow is told: the `error` code the app is sent back with, the session errors,
 * and the audit event that records the failure.
 */
import { BrokerError, isBrokerError } from "./errors.js";
import { widenedGrantAuditDetails } from "./granted-scopes.js";
import type { AuditEventInput } from "./ports.js";
import type { AuthorizationSession } from "./types.js";

export type AuditCaller = Pick<AuditEventInput, "caller" | "callerKind" | "requestId" | "peer">;

/** RFC 6749 §4.1.2.1 `error` as it may appear in the app's URL: lower-case letters and `_`. */
export function sanitizeErrorCode(code: string): string {
  const cleaned = code.toLowerCase().replace(/[^a-z_]/g, "").slice(0, 64);
  return cleaned === "" ? "server_error" : cleaned;
}

/**
 * The `error` a failed flow sends the app to: the provider's own authorization error, or one of
 * `invalid_state`, `expired_state`, `invalid_issuer`, `invalid_grant` (code or verifier
 * refused), `invalid_scope` (the grant carried scopes the broker did not ask for),
 * `temporarily_unavailable`, `server_error`.
 */
export function callbackErrorCode(error: unknown, providerError?: string): string {
  if (isBrokerError(error, "authorization_session_invalid")) {
    switch (error.reason) {
      case "ISSUER_MISMATCH":
      case "ISSUER_MISSING":
        return "invalid_issuer";
      case "EXPIRED_STATE":
        return "expired_state";
      case "AUTHORIZATION_CODE_REJECTED":
      case "VERIFIER_MISSING":
        return "invalid_grant";
      default:
        return "invalid_state";
    }
  }
  if (providerError !== undefined && isBrokerError(error) && error.metadata["error"] === providerError.slice(0, 64)) {
    return sanitizeErrorCode(providerError);
  }
  if (isBrokerError(error, "authorization_denied")) return sanitizeErrorCode(error.metadata["error"] ?? "access_denied");
  if (
    isBrokerError(error, "provider_unavailable") ||
    isBrokerError(error, "provider_rate_limited") ||
    isBrokerError(error, "deadline_exceeded")
  ) {
    return "temporarily_unavailable";
  }
  return "server_error";
}

export function sessionInvalid(reason: "INVALID_STATE" | "EXPIRED_STATE" | "PROVIDER_MISMATCH", provider: string): BrokerError {
  const messages = {
    INVALID_STATE: "the authorization session is unknown, already used, or belongs to someone else; start the authorization again",
    EXPIRED_STATE: "the authorization session expired; start the authorization again",
    PROVIDER_MISMATCH: `the authorization session was not started for provider "${provider}"; start the authorization again`,
  };
  return new BrokerError("authorization_session_invalid", messages[reason], { reason, metadata: { provider } });
}

/** `authorization.failed` (or `denied`), with the widened scopes when that was the failure. */
export function failureEvent(error: BrokerError, provider: string, session: AuthorizationSession | undefined, caller: AuditCaller): AuditEventInput {
  return {
    action: "authorization.failed",
    outcome: error.code === "authorization_denied" ? "denied" : "failure",
    reason: error.reason,
    ...caller,
    userId: session?.userId,
    provider,
    details: {
      code: error.code,
      ...(session === undefined ? {} : { session_id: session.id }),
      ...(error.reason === "SCOPE_WIDENED" ? widenedGrantAuditDetails(error) : {}),
    },
  };
}


/** A failure that is not a `BrokerError` is reported as `internal`, its detail kept as the cause. */
export function asBrokerError(error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  return new BrokerError("internal", "the authorization could not be completed", { cause: error });
}
