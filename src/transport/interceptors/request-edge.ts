/**
 * The edge check of every request, placed after authentication and rate limits so that an
 * unauthenticated caller learns nothing about its body and a flood of bad requests is still
 * rate-limited: a body the listener refused (too large, undecodable) is answered here, and every
 * string and repeated field is held to its maximum (request-limits.ts) before a handler runs.
 */
import type { Message } from "@bufbuild/protobuf";
import type { Interceptor } from "../call.js";
import { fieldLimitError, requestLimitViolations, withinLimits } from "../request-limits.js";

export function createRequestEdgeInterceptor(): Interceptor {
  return (call, invoke) => {
    if (call.refusal !== undefined) throw call.refusal;
    const request = call.request;
    if (request === undefined) return invoke();
    const message = request.message as Message;
    if (withinLimits(request.schema, message)) return invoke();
    const violations = requestLimitViolations(request.schema, message);
    if (violations.length === 0) return invoke();
    throw fieldLimitError(violations);
  };
}
