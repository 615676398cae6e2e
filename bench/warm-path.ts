/**
 * Benchmark (a): GetAccessToken's warm path over gRPC against a bare @grpc/grpc-js echo server
 * that answers with a real response of the broker: same client, concurrency and message sizes.
 * Targets: the broker reaches ≥ 0.85 of the echo server's throughput (median of per-round
 * ratios), costs at most 1.3 times the echo's CPU per call (this process and PostgreSQL), and
 * its p99 latency is at most 1.5 times the echo's.
 *
 * A third contender measures what the audit rule costs on its own: the same bare echo server,
 * except that each call first goes through a real disclosure ledger (disclosures.ts) on the
 * broker's own audit writer, as every token the broker hands out does: a caller's first
 * disclosure awaits its durable `token.issued` record, repeats are counted and written as
 * `token.reissued` rows at the broker's default interval. All three run in this process, in
 * alternating rounds, so the ratios survive a noisy machine.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { signLocalToken } from "../src/auth/local-signing-key.js";
import { GetAccessTokenRequestSchema, GetAccessTokenResponseSchema, TokenService } from "../src/gen/oauthbroker/v1/token_service_pb.js";
import { createDatabase, type Database } from "../src/storage/database.js";
import { createPostgresAuditLog, type PostgresAuditLog } from "../src/storage/audit-log.js";
import { runMigrations } from "../src/storage/migrate.js";
import { createDisclosureLedger } from "../src/domain/tokens/disclosures.js";
import { integrationFixture } from "../test/support/token-fakes.js";
import { connectSandboxAccount } from "../test/support/browser-flow.js";
import { benchLogger, logLevel, startBenchBroker } from "./support/broker.js";
import { combine, formatLoad, interleave, median, runLoad, unaryCall, type LoadResult } from "./support/load.js";
import type { BenchServer } from "./support/postgres.js";
import { envInt, verdict, type BenchReport } from "./support/report.js";

const THROUGHPUT_TARGET = 0.85;
const CPU_TARGET = 1.3;
const P99_TARGET = 1.5;
/** The broker's default `tokens.reissueFlushSeconds`. */
const REISSUE_FLUSH_MS = 10_000;

export async function benchWarmPath(server: BenchServer): Promise<BenchReport> {
  const concurrency = envInt("BENCH_CONCURRENCY", 64);
  const durationMs = envInt("BENCH_DURATION_MS", 3_000);
  const rounds = Math.max(1, envInt("BENCH_ROUNDS", 3));
  const bench = await startBenchBroker({ databaseUrl: await server.createDatabase("warm") });
  const echo = new grpc.Server();
  const auditedEcho = new grpc.Server();
  let auditDatabase: Database | undefined;
  let audit: PostgresAuditLog | undefined;
  let stopFlushing = async (): Promise<void> => {};
  try {
    // Its own database: its records must not move the tip of the chain the broker appends to.
    const logger = benchLogger();
    auditDatabase = createDatabase({ url: await server.createDatabase("warm_audit"), logger });
    await runMigrations(auditDatabase.sql);
    const auditLog = createPostgresAuditLog({ sql: auditDatabase.sql, logger });
    audit = auditLog;
    const user = await signLocalToken(bench.signingKey, { subject: "bench-user", kind: "user" });
    await connectSandboxAccount(bench.httpUrl, user, "bench-account");
    const request = Buffer.from(
      toBinary(
        GetAccessTokenRequestSchema,
        create(GetAccessTokenRequestSchema, { userId: "bench-user", provider: "sandbox", minValidFor: durationFromMs(30_000) }),
      ),
    );
    const path = `/${TokenService.typeName}/GetAccessToken`;

    // A real response of the broker, echoed back by the bare server: same sizes on the wire.
    const client = new grpc.Client(bench.grpcAddress, grpc.credentials.createInsecure());
    const sample = await unaryCall(client, path, request, bench.adminMetadata);
    client.close();
    void fromBinary(GetAccessTokenResponseSchema, sample);
    const echoAddress = await serveRaw(echo, path, (_call, callback) => callback(null, sample));
    let calls = 0;
    const ledger = createDisclosureLedger({ audit: auditLog, logger, maxKeys: 2_000 });
    const flushing = setInterval(() => void ledger.flush().catch(() => undefined), REISSUE_FLUSH_MS);
    stopFlushing = async () => {
      clearInterval(flushing);
      // Before its audit writer closes, as the broker does at shutdown.
      await ledger.flush().catch(() => undefined);
    };
    const disclosed = integrationFixture("00000000-0000-4000-8000-000000000000", { userId: "bench-user", provider: "sandbox" });
    const principal = { kind: "service", subject: "bench", issuer: "local" } as const;
    const auditedEchoAddress = await serveRaw(auditedEcho, path, (call, callback) => {
      calls += 1;
      const ctx = { principal, requestId: `bench-${calls}`, peer: call.getPeer(), deadline: undefined, signal: NEVER_ABORTED };
      // The broker's rule (token-service.ts): the first disclosure awaits its record, a repeat is counted.
      const recording = ledger.disclose(ctx, disclosed, 1, [], Date.now());
      if (recording === undefined) {
        callback(null, sample);
        return;
      }
      recording.then(
        () => callback(null, sample),
        (error: unknown) => callback({ code: grpc.status.INTERNAL, details: String(error) }),
      );
    });

    const load = (address: string) => () =>
      runLoad({ address, path, metadata: bench.adminMetadata, next: () => request, concurrency, durationMs });
    const contenders = { echo: load(echoAddress), auditedEcho: load(auditedEchoAddress), broker: load(bench.grpcAddress) };
    // One unmeasured round first: whoever ran first paid for the JIT of the shared client, and
    // the first echo round came out a quarter slower than the rest.
    await interleave(1, contenders);
    const results = await interleave(rounds, contenders);
    const ratiosTo = (contender: readonly LoadResult[], base: readonly LoadResult[] = results.echo) =>
      contender.map((result, i) => result.perSecond / (base[i]?.perSecond ?? Number.NaN));
    const ratios = ratiosTo(results.broker);
    const ratio = median(ratios);
    const ceilings = ratiosTo(results.auditedEcho);
    const ofCeiling = ratiosTo(results.broker, results.auditedEcho);
    const echoLoad = combine(results.echo);
    const auditedEchoLoad = combine(results.auditedEcho);
    const brokerLoad = combine(results.broker);
    const perRound = (contender: readonly LoadResult[]) => contender.map((result) => result.perSecond.toFixed(0)).join(", ");
    const totalCpu = (result: LoadResult) => result.cpuPerCallMicros + (result.databaseCpuPerCallMicros ?? 0);
    const cpuRatio = totalCpu(brokerLoad) / totalCpu(echoLoad);
    const p99Ratio = brokerLoad.p99 / echoLoad.p99;
    return {
      title: `(a) warm GetAccessToken over gRPC vs a bare grpc-js echo server: concurrency ${concurrency}, ${rounds} alternating rounds of ${durationMs / 1000} s, response ${sample.length} bytes, log level ${logLevel()}`,
      lines: [
        `echo server:          ${formatLoad(echoLoad)}`,
        `echo + audit record:  ${formatLoad(auditedEchoLoad)}`,
        `broker:               ${formatLoad(brokerLoad)}`,
        `per-round req/s: echo ${perRound(results.echo)}; echo + audit record ${perRound(results.auditedEcho)}; broker ${perRound(results.broker)}`,
        `per-round throughput ratios broker/echo: ${ratios.map((r) => r.toFixed(2)).join(", ")}`,
        `ceiling set by the audit rule alone (first disclosure recorded, repeats counted), (echo + audit record)/echo: ${median(ceilings).toFixed(2)} (rounds ${ceilings.map((r) => r.toFixed(2)).join(", ")}); ` +
          `the broker reaches ${median(ofCeiling).toFixed(2)} of it (median of rounds)`,
        // The load generator, both servers and PostgreSQL share this machine's cores: CPU spent
        // anywhere per call bounds throughput, the audit rows' PostgreSQL work included.
        `CPU per call, all of it (this process + PostgreSQL): echo ${totalCpu(echoLoad).toFixed(0)} µs, echo + audit record ${totalCpu(auditedEchoLoad).toFixed(0)} µs, broker ${totalCpu(brokerLoad).toFixed(0)} µs`,
        // Every local postgres process is counted, a neighbour's included: on a shared server
        // this part is noise for the two contenders that write nothing per call.
        `CPU per call of this process alone, broker/echo: ${(brokerLoad.cpuPerCallMicros / echoLoad.cpuPerCallMicros).toFixed(2)}`,
      ],
      checks: [
        { label: `throughput ratio broker/echo = ${ratio.toFixed(2)} (median of rounds)`, target: `≥ ${THROUGHPUT_TARGET.toFixed(2)}`, verdict: verdict(ratio >= THROUGHPUT_TARGET) },
        { label: `CPU per call broker/echo = ${cpuRatio.toFixed(2)} (medians of rounds, this process + PostgreSQL)`, target: `≤ ${CPU_TARGET.toFixed(2)}`, verdict: verdict(cpuRatio <= CPU_TARGET) },
        { label: `p99 latency broker/echo = ${p99Ratio.toFixed(2)} (${brokerLoad.p99.toFixed(2)} / ${echoLoad.p99.toFixed(2)} ms, medians of rounds)`, target: `≤ ${P99_TARGET.toFixed(2)}`, verdict: verdict(p99Ratio <= P99_TARGET) },
      ],
    };
  } finally {
    echo.forceShutdown();
    auditedEcho.forceShutdown();
    try {
      await stopFlushing();
      await audit?.close();
      await auditDatabase?.close();
    } finally {
      await bench.stop();
    }
  }
}

/** The echo's calls never wait on anything that could be cut short. */
const NEVER_ABORTED = new AbortController().signal;

/** Serves `handler` at `path` with raw bytes in and out; returns the address. */
async function serveRaw(
  server: grpc.Server,
  path: string,
  handler: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => void,
): Promise<string> {
  const raw = (bytes: Buffer) => bytes;
  server.addService(
    { get: { path, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } },
    { get: handler },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return `127.0.0.1:${port}`;
}
