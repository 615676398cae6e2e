/**
 * Prometheus metrics (prom-client) in a registry of the broker's own, so several brokers in one
 * process (tests) do not collide. Label values never carry user ids or secrets.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface Metrics {
  readonly registry: Registry;
  readonly rpcStarted: Counter<"grpc_service" | "grpc_method">;
  readonly rpcHandled: Counter<"grpc_service" | "grpc_method" | "grpc_code">;
  readonly rpcHandlingSeconds: Histogram<"grpc_service" | "grpc_method">;
  render(): Promise<{ contentType: string; body: string }>;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const rpcLabels = ["grpc_service", "grpc_method"] as const;
  return {
    registry,
    rpcStarted: new Counter({
      name: "grpc_server_started_total",
      help: "RPCs started on the server.",
      labelNames: rpcLabels,
      registers: [registry],
    }),
    rpcHandled: new Counter({
      name: "grpc_server_handled_total",
      help: "RPCs completed on the server, by status code.",
      labelNames: [...rpcLabels, "grpc_code"] as const,
      registers: [registry],
    }),
    rpcHandlingSeconds: new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Time from the start of an RPC to its completion.",
      labelNames: rpcLabels,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
