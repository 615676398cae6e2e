/**
 * Benchmark (b): GetAccessToken's cold path (cache miss: PostgreSQL + decrypt) against the warm
 * path of the same broker. The cache is bounded at 1,000 entries and the cold walk cycles over
 * 2,000 seeded integrations, so every cold call misses (least recently used goes first); the
 * broker's own cache metric confirms it. Measured twice: one caller at a time (the path's
 * latency) and many concurrent callers (its throughput).
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { GetAccessTokenRequestSchema, TokenService } from "../src/gen/oauthbroker/v1/token_service_pb.js";
import type { Metrics } from "../src/observability/metrics.js";
import { startBenchBroker, type BenchBroker } from "./support/broker.js";
import { combine, formatLoad, interleave, runLoad, type LoadResult } from "./support/load.js";
import type { BenchServer } from "./support/postgres.js";
import { envInt, ms, type BenchReport } from "./support/report.js";
import { seedIntegrations } from "./support/seed.js";

export const CACHE_MAX_ENTRIES = 1_000;
export const COLD_SET = 2_000;
export const GET_ACCESS_TOKEN = `/${TokenService.typeName}/GetAccessToken`;

export function tokenRequest(integrationId: string): Buffer {
  return Buffer.from(
    toBinary(GetAccessTokenRequestSchema, create(GetAccessTokenRequestSchema, { integrationId, minValidFor: durationFromMs(30_000) })),
  );
}

/** Requests for `ids`, handed out in order and round again. */
export function cycle(ids: readonly string[]): () => Buffer {
  const requests = ids.map(tokenRequest);
  let next = 0;
  return () => {
    const request = requests[next % requests.length];
    next += 1;
    if (request === undefined) throw new Error("no integrations to walk");
    return request;
  };
}

export async function cacheCounts(metrics: Metrics): Promise<{ hit: number; miss: number }> {
  const { values } = await metrics.tokenCacheRequests.get();
  const of = (result: string) => values.find((v) => v.labels["result"] === result)?.value ?? 0;
  return { hit: of("hit"), miss: of("miss") };
}

export function startDataPathBroker(databaseUrl: string): Promise<BenchBroker> {
  return startBenchBroker({ databaseUrl, extraYaml: `tokens:\n  cacheMaxEntries: ${CACHE_MAX_ENTRIES}\n` });
}

export interface PathSettings {
  readonly phaseMs: number;
  readonly concurrency: number;
}

export function pathSettings(): PathSettings {
  return { phaseMs: envInt("BENCH_PHASE_MS", 2_000), concurrency: envInt("BENCH_DATA_CONCURRENCY", 32) };
}

/** The four loads of one broker: warm and cold, one caller and many. */
export function pathLoads(bench: BenchBroker, warmId: string, coldIds: readonly string[], settings: PathSettings) {
  const warm = cycle([warmId]);
  const cold = cycle(coldIds);
  const load = (next: () => Buffer, concurrency: number) => () =>
    runLoad({ address: bench.grpcAddress, path: GET_ACCESS_TOKEN, metadata: bench.adminMetadata, next, concurrency, durationMs: settings.phaseMs, warmupCalls: 50 });
  return {
    warmSerial: load(warm, 1),
    coldSerial: load(cold, 1),
    warmConcurrent: load(warm, settings.concurrency),
    coldConcurrent: load(cold, settings.concurrency),
  };
}

export function describePaths(results: Record<"warmSerial" | "coldSerial" | "warmConcurrent" | "coldConcurrent", LoadResult[]>, concurrency: number): {
  lines: string[];
  warmSerial: LoadResult;
  coldSerial: LoadResult;
  warmConcurrent: LoadResult;
  coldConcurrent: LoadResult;
} {
  const warmSerial = combine(results.warmSerial);
  const coldSerial = combine(results.coldSerial);
  const warmConcurrent = combine(results.warmConcurrent);
  const coldConcurrent = combine(results.coldConcurrent);
  return {
    warmSerial,
    coldSerial,
    warmConcurrent,
    coldConcurrent,
    lines: [
      `1 caller:    warm ${formatLoad(warmSerial)}`,
      `             cold ${formatLoad(coldSerial)}`,
      `${`${concurrency} callers:`.padEnd(13)}warm ${formatLoad(warmConcurrent)}`,
      `             cold ${formatLoad(coldConcurrent)}`,
    ],
  };
}

export async function benchColdPath(server: BenchServer): Promise<BenchReport> {
  const settings = pathSettings();
  const rounds = Math.max(1, envInt("BENCH_ROUNDS", 3));
  const databaseUrl = await server.createDatabase("cold");
  const bench = await startDataPathBroker(databaseUrl);
  try {
    const seeded = await seedIntegrations({ databaseUrl, cipher: bench.broker.cipher, count: COLD_SET + 1, label: "cold" });
    const [warmId = "", ...coldIds] = seeded.ids;
    const loads = pathLoads(bench, warmId, coldIds, settings);
    // The cache lookups of the cold loads alone, to show they all missed.
    let lookups = 0;
    let misses = 0;
    const counted = (load: () => Promise<LoadResult>) => async () => {
      const before = await cacheCounts(bench.broker.metrics);
      const result = await load();
      const after = await cacheCounts(bench.broker.metrics);
      lookups += after.hit + after.miss - before.hit - before.miss;
      misses += after.miss - before.miss;
      return result;
    };
    const results = await interleave(rounds, {
      warmSerial: loads.warmSerial,
      coldSerial: counted(loads.coldSerial),
      warmConcurrent: loads.warmConcurrent,
      coldConcurrent: counted(loads.coldConcurrent),
    });
    const paths = describePaths(results, settings.concurrency);
    const missRate = lookups === 0 ? 0 : misses / lookups;
    const latencyRatio = paths.coldSerial.p50 / paths.warmSerial.p50;
    const throughputRatio = paths.coldConcurrent.perSecond / paths.warmConcurrent.perSecond;
    return {
      title: `(b) cold path (cache miss: PostgreSQL + decrypt) vs warm path, one broker: ${COLD_SET} integrations walked, cache bound ${CACHE_MAX_ENTRIES}, ${rounds} rounds of ${settings.phaseMs / 1000} s per load`,
      lines: [
        ...paths.lines,
        `cache misses on the cold walk: ${(missRate * 100).toFixed(1)} % of ${lookups} lookups`,
        `cold adds ${ms(paths.coldSerial.p50 - paths.warmSerial.p50)} at p50 for one caller; cold/warm p50 latency = ${latencyRatio.toFixed(2)}x, throughput cold/warm = ${throughputRatio.toFixed(2)}`,
      ],
      checks: [
        {
          label: `every cold call missed the cache: ${(missRate * 100).toFixed(1)} %`,
          target: "100 % (otherwise the cold figures are not a cold path)",
          verdict: missRate >= 0.999 ? "PASS" : "FAIL",
        },
        { label: `cold/warm p50 latency = ${latencyRatio.toFixed(2)}x (1 caller)`, target: "none set; reported", verdict: "INFO" },
      ],
    };
  } finally {
    await bench.stop();
  }
}
