/**
 * `grpc.health.v1.Health`: overall ("") and per-service status, Check and Watch. The whole
 * replica turns NOT_SERVING when it starts draining, so load balancers stop sending calls
 * before the listeners close.
 */
import { on } from "node:events";
import { EventEmitter } from "node:events";
import type { ServiceImpl } from "@connectrpc/connect";
import { BrokerError } from "../domain/errors.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { bindService, type ServiceBinding } from "./service-binding.js";

export { ServingStatus };

export interface HealthState {
  readonly binding: ServiceBinding;
  /** Marks every known service (and the overall status) as `status`. */
  setAll(status: ServingStatus): void;
  set(service: string, status: ServingStatus): void;
  get(service: string): ServingStatus | undefined;
}

export function createHealth(serviceNames: readonly string[]): HealthState {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  for (const name of serviceNames) statuses.set(name, ServingStatus.SERVING);
  const changes = new EventEmitter();
  changes.setMaxListeners(0);

  const set = (service: string, status: ServingStatus) => {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    changes.emit("change", service);
  };

  const impl: ServiceImpl<typeof Health> = {
    check(request) {
      const status = statuses.get(request.service);
      if (status === undefined) {
        throw new BrokerError("not_found", `unknown service "${request.service}": ask for "" or a served service name`);
      }
      return { status };
    },
    async *watch(request, ctx) {
      let last = statuses.get(request.service) ?? ServingStatus.SERVICE_UNKNOWN;
      yield { status: last };
      try {
        for await (const [service] of on(changes, "change", { signal: ctx.signal }) as AsyncIterable<[string]>) {
          if (service !== request.service) continue;
          const next = statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
          if (next === last) continue;
          last = next;
          yield { status: next };
        }
      } catch (error) {
        if ((error as Error).name !== "AbortError") throw error;
      }
    },
  };

  return {
    binding: bindService(Health, impl),
    set,
    get: (service) => statuses.get(service),
    setAll(status) {
      for (const service of [...statuses.keys()]) set(service, status);
    },
  };
}
