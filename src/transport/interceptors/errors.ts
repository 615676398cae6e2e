/**
 * Turns whatever a handler throws into the status the caller receives (see error-mapping.ts),
 * for unary calls and for errors that surface in the middle of a response stream.
 */
import type { CallContext, Interceptor } from "../call.js";
import { toConnectError } from "../error-mapping.js";
import { observeStream } from "../service-binding.js";

export function createErrorInterceptor(): Interceptor {
  return async <R>(call: CallContext, invoke: () => Promise<R>): Promise<R> => {
    let result: R;
    try {
      result = await invoke();
    } catch (error) {
      throw toConnectError(error);
    }
    if (call.methodKind === "unary" || call.methodKind === "client_streaming") return result;
    return observeStream(result as AsyncIterable<unknown>, { onError: toConnectError }) as R;
  };
}
