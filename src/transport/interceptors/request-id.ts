/**
 * Gives every call a request id: the caller's `x-request-id` when it is a sane token (so ids
 * propagate across services), otherwise a new one. It is echoed back and appears on every log
 * line and audit event of the call.
 */
import { randomUUID } from "node:crypto";
import type { Interceptor } from "../call.js";

const ACCEPTABLE_ID = /^[A-Za-z0-9._:-]{1,64}$/;

export function createRequestIdInterceptor(): Interceptor {
  return (call, invoke) => {
    const offered = call.requestHeader.get("x-request-id");
    call.requestId = offered !== null && ACCEPTABLE_ID.test(offered) ? offered : randomUUID();
    call.responseHeader.set("x-request-id", call.requestId);
    return invoke();
  };
}
