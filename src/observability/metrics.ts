/**
 * Prometheus metrics (prom-client) in a registry of the broker's own, not prom-client's global
 * one, so several brokers in one process (tests) do not collide. Names follow the Prometheus
 * conventions (`_total` counters, `_seconds` histograms) and the go-grpc-prometheus names that
 * existing gRPC dashboards expect. Label values never carry user ids, tokens or other secrets:
 * they would leak, and every distinct value is a new time series.
 *
 * To add a metric, add one line to `defineMetrics`; the `Metrics` type follows.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** 0.5 ms … 10 s: a cache hit is sub-millisecond, a refresh at a slow provider takes seconds. */
export const LATENCY_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const RPC = ["grpc_service", "grpc_method"] as const;

/** Creates metrics registered in one registry. */
export interface MetricFactory {
  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L>;
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L>;
  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets?: readonly number[]): Histogram<L>;
}

/** Every broker metric, one per line. */
function defineMetrics(m: MetricFactory) {
  return {
    rpcStarted: m.counter("grpc_server_started_total", "RPCs started on the server.", RPC),
    rpcHandled: m.counter("grpc_server_handled_total", "RPCs completed on the server, by status code.", [...RPC, "grpc_code"]),
    rpcHandlingSeconds: m.histogram("grpc_server_handling_seconds", "Time from the start of an RPC to its completion.", RPC),
    tokenCacheRequests: m.counter("oauth_broker_token_cache_requests_total", "Token lookups by cache result (hit, miss).", ["result"]),
    tokenRefreshes: m.counter("oauth_broker_token_refreshes_total", "Refresh calls at providers, by result (success or error code).", ["provider", "result"]),
    tokenRefreshSeconds: m.histogram("oauth_broker_token_refresh_seconds", "Duration of refresh calls at providers.", ["provider"]),
    leaseWaits: m.counter("oauth_broker_refresh_lease_waits_total", "Times a caller waited for another replica's refresh.", []),
    circuitOpen: m.gauge("oauth_broker_provider_circuit_open", "1 while a provider's circuit breaker is open (calls fail fast).", ["provider"]),
    auditWriteFailures: m.counter("oauth_broker_audit_write_failures_total", "Audit events that could not be written (their operations failed).", []),
    auditChainIntact: m.gauge("oauth_broker_audit_chain_intact", "1 while the audit hash chain verifies, 0 once a break is found.", []),
  };
}

export interface Metrics extends ReturnType<typeof defineMetrics> {
  readonly registry: Registry;
  /** The exposition text for GET /metrics, with its content type. */
  render(): Promise<{ contentType: string; body: string }>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const factory: MetricFactory = {
    counter: (name, help, labelNames) => new Counter({ name, help, labelNames, registers }),
    gauge: (name, help, labelNames) => new Gauge({ name, help, labelNames, registers }),
    histogram: (name, help, labelNames, buckets = LATENCY_BUCKETS) =>
      new Histogram({ name, help, labelNames, buckets: [...buckets], registers }),
  };
  return {
    ...defineMetrics(factory),
    registry,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
