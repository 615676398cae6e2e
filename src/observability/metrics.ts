/**
 * Prometheus metrics (prom-client) in a registry of the broker's own, not prom-client's global
 * one, so several brokers in one process (tests) do not collide. Names follow the Prometheus
 * conventions (`_total` counters, `_seconds` histograms) and the go-grpc-prometheus names that
 * existing gRPC dashboards expect. Label values never carry user ids, tokens or other secrets:
 * they would leak, and every distinct value is a new time series.
 *
 * To add a metric, add one line to `defineMetrics`; the `Metrics` type follows. The Grafana
 * dashboard and the alert rules in `deploy/` may only use names defined here
 * (test/integration/deploy-*.test.ts checks that).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { CircuitState } from "../domain/tokens/circuit-breaker.js";
import type { IntegrationStatus } from "../domain/types.js";

/** 0.5 ms … 10 s: a cache hit is sub-millisecond, a refresh at a slow provider takes seconds. */
export const LATENCY_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const RPC = ["grpc_service", "grpc_method"] as const;

/** Every state, so a dashboard sees 0 for the states a provider is not in rather than no series. */
export const CIRCUIT_STATES = ["closed", "open", "half_open"] as const satisfies readonly CircuitState[];

/** Every status, so `needs_reauth` starts at 0 and its first increase is visible to `delta()`. */
export const INTEGRATION_STATUSES = ["active", "needs_reauth", "deleted"] as const satisfies readonly IntegrationStatus[];

const GAUGES_NAMED_LIKE_COUNTERS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"] as const;

/** Default life of one integration count: several Prometheus replicas scraping cost one query. */
export const INTEGRATION_COUNTS_TTL_MS = 5_000;

/** One row of `select provider, status, count(*) … group by provider, status`. */
export interface IntegrationCountSample {
  readonly provider: string;
  readonly status: string;
  readonly count: number;
  /** Of those, the ones holding no refresh token. */
  readonly withoutRefreshToken?: number | undefined;
}

export interface MetricsOptions {
  /** Read at scrape time (at most once per `integrationCountsTtlMs`) for `oauth_broker_integrations`. */
  readonly integrationCounts?: (() => Promise<readonly IntegrationCountSample[]>) | undefined;
  readonly integrationCountsTtlMs?: number | undefined;
  /** A failed count drops the gauge's series for that scrape; this hears why. */
  readonly onCollectError?: ((error: unknown) => void) | undefined;
  /** Read at scrape time for the in-flight watchdog's gauges. */
  readonly inflight?: (() => { readonly oldestSeconds: number; readonly overdue: number }) | undefined;
  /** Milliseconds clock for the count's cache (tests). */
  readonly now?: (() => number) | undefined;
}

/** Creates metrics registered in one registry. */
export interface MetricFactory {
  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L>;
  /** `collect` runs on every scrape, before the gauge is read. */
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[], collect?: (gauge: Gauge<L>) => Promise<void>): Gauge<L>;
  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets?: readonly number[]): Histogram<L>;
}

/** Every broker metric, one per line. */
function defineMetrics(m: MetricFactory, collectors: IntegrationCollectors, options: MetricsOptions) {
  return {
    rpcStarted: m.counter("grpc_server_started_total", "RPCs started on the server.", RPC),
    rpcHandled: m.counter("grpc_server_handled_total", "RPCs completed on the server, by status code.", [...RPC, "grpc_code"]),
    rpcHandlingSeconds: m.histogram("grpc_server_handling_seconds", "Time from the start of an RPC to its completion.", RPC),
    tokenCacheRequests: m.counter("oauth_broker_token_cache_requests_total", "Token lookups by cache result (hit, miss).", ["result"]),
    tokenRefreshes: m.counter("oauth_broker_token_refreshes_total", "Refresh calls at providers, by result (success or error code).", ["provider", "result"]),
    tokenRefreshSeconds: m.histogram("oauth_broker_token_refresh_seconds", "Duration of refresh calls at providers.", ["provider"]),
    providerPauses: m.counter("oauth_broker_provider_pauses_total", "Rate-limited answers this replica got from a provider's token endpoint, each pausing it on every replica.", ["provider"]),
    leaseWaits: m.counter("oauth_broker_refresh_lease_waits_total", "Times a caller waited for another replica's refresh.", []),
    circuitOpen: m.gauge("oauth_broker_provider_circuit_open", "1 while a provider's circuit breaker is open (calls fail fast).", ["provider"]),
    circuitState: m.gauge("oauth_broker_provider_circuit_state", "1 for the state a provider's circuit breaker is in (closed, open, half_open), 0 for the others.", ["provider", "state"]),
    providerHttpRequests: m.counter("oauth_broker_provider_http_requests_total", "HTTP requests to providers, by endpoint (discovery, token, revocation, userinfo, jwks, other) and status (HTTP code, or timeout, network, aborted, insecure_endpoint).", ["provider", "endpoint", "status"]),
    providerHttpRequestSeconds: m.histogram("oauth_broker_provider_http_request_duration_seconds", "Time from sending an HTTP request to a provider to its response headers (or its failure).", ["provider", "endpoint"]),
    keyServiceRequests: m.counter("oauth_broker_key_service_requests_total", "Key service calls (Vault transit or the local keyring), by operation and result (success or error code).", ["operation", "result"]),
    keyServiceRequestSeconds: m.histogram("oauth_broker_key_service_request_duration_seconds", "Duration of key service calls; a batch is one call.", ["operation"]),
    integrations: m.gauge("oauth_broker_integrations", "Integrations stored, by provider and status (read from PostgreSQL at scrape time, cached for a few seconds).", ["provider", "status"], collectors.byStatus),
    integrationsWithoutRefreshToken: m.gauge("oauth_broker_integrations_without_refresh_token", "Active integrations holding no refresh token, by provider: they stop working when their access token expires (the user must reconnect).", ["provider"], collectors.withoutRefreshToken),
    auditWriteFailures: m.counter("oauth_broker_audit_write_failures_total", "Audit events that could not be written (their operations failed).", []),
    auditChainIntact: m.gauge("oauth_broker_audit_chain_intact", "1 while the audit hash chain verifies, 0 once a break is found.", []),
    inflightOldestSeconds: m.gauge("oauth_broker_inflight_oldest_seconds", "Age of the oldest unary RPC still in flight (0 when none): grows without bound when a call hangs.", [], async (gauge) => {
      gauge.set(options.inflight?.().oldestSeconds ?? 0);
    }),
    inflightOverdueCalls: m.gauge("oauth_broker_inflight_overdue_calls", "Unary RPCs in flight more than the grace past their deadline; /readyz fails while this is above 0.", [], async (gauge) => {
      gauge.set(options.inflight?.().overdue ?? 0);
    }),
  };
}

export interface Metrics extends ReturnType<typeof defineMetrics> {
  readonly registry: Registry;
  /** Records a circuit breaker's new state on both circuit gauges. */
  setCircuitState(provider: string, state: CircuitState): void;
  /** The exposition text for GET /metrics, with its content type. */
  render(): Promise<{ contentType: string; body: string }>;
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client's totals of these are gauges named like counters, which `promtool check metrics`
  // rejects; each is `sum()` of the gauge of the same name without `_total`.
  for (const name of GAUGES_NAMED_LIKE_COUNTERS) registry.removeSingleMetric(name);
  const registers = [registry];
  const factory: MetricFactory = {
    counter: (name, help, labelNames) =>
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          flushTallies(this);
        },
      }),
    gauge: (name, help, labelNames, collect) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        // prom-client calls `collect` with the gauge as `this`.
        ...(collect === undefined ? {} : { collect() { return collect(this); } }),
      }),
    histogram: (name, help, labelNames, buckets = LATENCY_BUCKETS) =>
      new Histogram({ name, help, labelNames, buckets: [...buckets], registers }),
  };
  const metrics = defineMetrics(factory, integrationCollectors(options), options);
  return {
    ...metrics,
    registry,
    setCircuitState(provider, state) {
      metrics.circuitOpen.set({ provider }, state === "open" ? 1 : 0);
      for (const candidate of CIRCUIT_STATES) metrics.circuitState.set({ provider, state: candidate }, candidate === state ? 1 : 0);
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

interface PendingCount {
  readonly add: (count: number) => void;
  pending: number;
}

const talliesOf = new WeakMap<object, PendingCount[]>();

function flushTallies(counter: object): void {
  for (const tally of talliesOf.get(counter) ?? []) {
    const count = tally.pending;
    tally.pending = 0;
    if (count > 0) tally.add(count);
  }
}

/**
 * One labelled series of `counter`, counted in a plain number and added to the counter whenever
 * the counter is read (a scrape, `get()`). prom-client hashes and validates the label set on
 * every increment, even of a labelled child: per RPC that was as much as the rate limiting.
 * For series counted on every call; the counter must come from this module's factory.
 */
export interface Tally {
  inc(): void;
}

export function counterTally<L extends string>(counter: Counter<L>, labels: Partial<Record<L, string | number>>): Tally {
  const child = counter.labels(labels);
  const tally: PendingCount = { add: (count) => child.inc(count), pending: 0 };
  let tallies = talliesOf.get(counter);
  if (tallies === undefined) {
    tallies = [];
    talliesOf.set(counter, tallies);
  }
  tallies.push(tally);
  return {
    inc() {
      tally.pending += 1;
    },
  };
}

/**
 * Fills the integrations gauge from `options.integrationCounts`. One count serves every scrape
 * within the TTL, and concurrent scrapes share the query in flight. A failed count empties the
 * gauge rather than repeating stale numbers: a missing series is something `absent()` can see.
 */
interface IntegrationCollectors {
  readonly byStatus: (gauge: Gauge<"provider" | "status">) => Promise<void>;
  readonly withoutRefreshToken: (gauge: Gauge<"provider">) => Promise<void>;
}

function integrationCollectors(options: MetricsOptions): IntegrationCollectors {
  const load = options.integrationCounts;
  const ttlMs = options.integrationCountsTtlMs ?? INTEGRATION_COUNTS_TTL_MS;
  const now = options.now ?? Date.now;
  let cached: { readonly at: number; readonly rows: readonly IntegrationCountSample[] } | undefined;
  let inFlight: Promise<readonly IntegrationCountSample[]> | undefined;

  async function counts(): Promise<readonly IntegrationCountSample[]> {
    if (cached !== undefined && now() - cached.at < ttlMs) return cached.rows;
    if (load === undefined) return [];
    inFlight ??= load().then(
      (rows) => {
        cached = { at: now(), rows };
        inFlight = undefined;
        return rows;
      },
      (error: unknown) => {
        inFlight = undefined;
        throw error;
      },
    );
    return inFlight;
  }

  /** Runs `fill` on fresh counts; a failed count empties the gauge (reported once, by the first). */
  const collector =
    <L extends string>(fill: (gauge: Gauge<L>, rows: readonly IntegrationCountSample[]) => void, report: boolean) =>
    async (gauge: Gauge<L>): Promise<void> => {
      if (load === undefined) return;
      let rows: readonly IntegrationCountSample[];
      try {
        rows = await counts();
      } catch (error) {
        gauge.reset();
        if (report) options.onCollectError?.(error);
        return;
      }
      gauge.reset();
      fill(gauge, rows);
    };

  return {
    byStatus: collector<"provider" | "status">((gauge, rows) => {
      for (const provider of new Set(rows.map((row) => row.provider))) {
        for (const status of INTEGRATION_STATUSES) gauge.set({ provider, status }, 0);
      }
      for (const row of rows) gauge.set({ provider: row.provider, status: row.status }, row.count);
    }, true),
    withoutRefreshToken: collector<"provider">((gauge, rows) => {
      for (const provider of new Set(rows.map((row) => row.provider))) gauge.set({ provider }, 0);
      for (const row of rows) if (row.status === "active") gauge.set({ provider: row.provider }, row.withoutRefreshToken ?? 0);
    }, false),
  };
}
