/**
 * The load generator every benchmark uses: one grpc-js client (one HTTP/2 connection), raw
 * bytes in and out so the client costs the same whatever server it talks to, a fixed number
 * of callers each sending its next request as soon as the previous one answered.
 */
import * as grpc from "@grpc/grpc-js";
import { localPostgresCpuMicros, processCpuMicros } from "./cpu.js";

export interface LoadOptions {
  readonly address: string;
  /** `/package.Service/Method`. */
  readonly path: string;
  readonly metadata: grpc.Metadata;
  /** The request of the next call (lets a run walk over many integrations). */
  readonly next: () => Buffer;
  readonly concurrency: number;
  readonly durationMs: number;
  /** Sequential calls before the clock starts (connection, JIT). Default 200. */
  readonly warmupCalls?: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly errors: number;
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
  /** CPU of this process (load generator and any in-process server) per call, µs. */
  readonly cpuPerCallMicros: number;
  /** CPU of local PostgreSQL processes per call, µs; undefined where it cannot be read. */
  readonly databaseCpuPerCallMicros: number | undefined;
}

const identity = (bytes: Buffer): Buffer => bytes;

/** Quantile `q` of ascending `sorted` (nearest rank). */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

export function median(values: readonly number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5);
}

export function unaryCall(client: grpc.Client, path: string, request: Buffer, metadata: grpc.Metadata): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(path, identity, identity, request, metadata, (error, response) =>
      error || response === undefined ? reject(error ?? new Error("no response")) : resolve(response),
    ),
  );
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const client = new grpc.Client(options.address, grpc.credentials.createInsecure());
  try {
    for (let i = 0; i < (options.warmupCalls ?? 200); i++) await unaryCall(client, options.path, options.next(), options.metadata);
    const latencies: number[] = [];
    let errors = 0;
    const cpuBefore = processCpuMicros();
    const databaseCpuBefore = localPostgresCpuMicros();
    const started = performance.now();
    const deadline = started + options.durationMs;
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (performance.now() < deadline) {
          const t = performance.now();
          try {
            await unaryCall(client, options.path, options.next(), options.metadata);
            latencies.push(performance.now() - t);
          } catch {
            errors += 1;
          }
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    const cpu = processCpuMicros() - cpuBefore;
    const databaseCpuAfter = localPostgresCpuMicros();
    const calls = Math.max(1, latencies.length + errors);
    latencies.sort((a, b) => a - b);
    return {
      requests: latencies.length,
      errors,
      perSecond: latencies.length / elapsed,
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      cpuPerCallMicros: cpu / calls,
      databaseCpuPerCallMicros:
        databaseCpuBefore === undefined || databaseCpuAfter === undefined ? undefined : (databaseCpuAfter - databaseCpuBefore) / calls,
    };
  } finally {
    client.close();
  }
}

/**
 * Runs the named loads in alternating rounds (A B A B …) so a neighbour's burst on a shared
 * machine hits every contender about equally, and returns each one's rounds.
 */
export async function interleave<K extends string>(
  rounds: number,
  loads: Readonly<Record<K, () => Promise<LoadResult>>>,
): Promise<Record<K, LoadResult[]>> {
  const names = Object.keys(loads) as K[];
  const results = Object.fromEntries(names.map((name) => [name, [] as LoadResult[]])) as Record<K, LoadResult[]>;
  for (let round = 0; round < rounds; round++) {
    // Alternate the order too: the second slot of a round is not always the same contender's.
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const name of order) results[name].push(await loads[name]());
  }
  return results;
}

/** The rounds of one contender folded into one result: medians of the per-round figures. */
export function combine(rounds: readonly LoadResult[]): LoadResult {
  return {
    requests: rounds.reduce((sum, r) => sum + r.requests, 0),
    errors: rounds.reduce((sum, r) => sum + r.errors, 0),
    perSecond: median(rounds.map((r) => r.perSecond)),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
    cpuPerCallMicros: median(rounds.map((r) => r.cpuPerCallMicros)),
    databaseCpuPerCallMicros: rounds.some((r) => r.databaseCpuPerCallMicros === undefined)
      ? undefined
      : median(rounds.map((r) => r.databaseCpuPerCallMicros ?? 0)),
  };
}

export function formatLoad(result: LoadResult): string {
  const errors = result.errors > 0 ? `, ${result.errors} errors` : "";
  const database = result.databaseCpuPerCallMicros === undefined ? "" : ` + PostgreSQL ${result.databaseCpuPerCallMicros.toFixed(0)} µs`;
  return (
    `${result.perSecond.toFixed(0)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms (${result.requests} calls${errors}); ` +
    `CPU per call: this process ${result.cpuPerCallMicros.toFixed(0)} µs${database}`
  );
}
