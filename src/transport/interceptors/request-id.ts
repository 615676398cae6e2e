/**
 * Gives every call a request id: the caller's `x-request-id` when it is a sane token (so ids
 * propagate across services), otherwise a new one. It is echoed back, and the call runs inside a
 * request context (observability/request-context.ts) so that every log line, audit event,
 * provider request and Vault request made for the call carries it without being passed along.
 */
import { randomUUID } from "node:crypto";
import {
  ACCEPTABLE_REQUEST_ID,
  bindStreamToContext,
  REQUEST_ID_HEADER,
  runWithRequestContext,
  type RequestContextStore,
} from "../../observability/request-context.js";
import { fullMethodName, type CallContext, type Interceptor } from "../call.js";

export function createRequestIdInterceptor(): Interceptor {
  return <R>(call: CallContext, invoke: () => Promise<R>): Promise<R> => {
    const offered = call.requestHeader.get(REQUEST_ID_HEADER);
    call.requestId = offered !== null && ACCEPTABLE_REQUEST_ID.test(offered) ? offered : randomUUID();
    call.responseHeader.set(REQUEST_ID_HEADER, call.requestId);
    const store: RequestContextStore = { requestId: call.requestId, method: fullMethodName(call) };
    const result = runWithRequestContext(store, invoke);
    if (call.methodKind === "unary" || call.methodKind === "client_streaming") return result;
    return result.then((stream) => bindStreamToContext(stream as AsyncIterable<unknown>, store) as R);
  };
}
