/**
 * Refuses new calls once the replica is shutting down, so clients move to another replica
 * while the calls already running finish. Health and reflection stay answerable.
 */
import { BrokerError } from "../../domain/errors.js";
import type { Interceptor } from "../call.js";

export function createDrainingInterceptor(deps: { isDraining: () => boolean; openServices: readonly string[] }): Interceptor {
  return (call, invoke) => {
    if (deps.isDraining() && !deps.openServices.includes(call.service)) {
      return Promise.reject(
        new BrokerError("draining", "this replica is shutting down; retry on another replica", {
          retryAfterMs: 100,
        }),
      );
    }
    return invoke();
  };
}
