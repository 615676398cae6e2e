/**
 * The edge check of every request, placed after authentication and rate limits so that an
 * unauthenticated caller learns nothing about its body and a flood of bad requests is still
 * rate-limited: a body the listener refused (too large, undecodable) is answered here, and every
 * string and repeated field is held to its maximum (request-limits.ts) before a handler runs.
 */
import type { Message } from "@bufbuild/protobuf";
import { BrokerError } from "../../domain/errors.js";
import type { Interceptor } from "../call.js";
import { requestLimitViolations } from "../request-limits.js";

export function createRequestEdgeInterceptor(): Interceptor {
  return (call, invoke) => {
    if (call.refusal !== undefined) throw call.refusal;
    const request = call.request;
    if (request === undefined) return invoke();
    const violations = requestLimitViolations(request.schema, request.message as Message);
    if (violations.length === 0) return invoke();
    const first = violations[0];
    const message =
      violations.length === 1 && first
        ? `${first.field}: ${first.description}`
        : `${violations.length} fields are over their limits (see README "Request limits and refusals"); first: ${first?.field ?? ""}: ${first?.description ?? ""}`;
    throw new BrokerError("invalid_argument", message, { reason: "FIELD_LIMIT_EXCEEDED", fieldViolations: violations });
  };
}
