/**
 * Benchmark (a): GetAccessToken's warm path over gRPC against a bare @grpc/grpc-js echo server
 * that answers with a real response of the broker: same client, concurrency and message sizes.
 * Both run in this process, in alternating rounds, so the ratio survives a noisy machine.
 * Target: the broker reaches ≥ 0.8 of the echo server's throughput.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { signLocalToken } from "../src/auth/local-signing-key.js";
import { GetAccessTokenRequestSchema, GetAccessTokenResponseSchema, TokenService } from "../src/gen/oauthbroker/v1/token_service_pb.js";
import { connectSandboxAccount } from "../test/support/sandbox-connect.js";
import { logLevel, startBenchBroker } from "./support/broker.js";
import { combine, formatLoad, interleave, median, runLoad, unaryCall, type LoadResult } from "./support/load.js";
import type { BenchServer } from "./support/postgres.js";
import { envInt, verdict, type BenchReport } from "./support/report.js";

const TARGET = 0.8;

export async function benchWarmPath(server: BenchServer): Promise<BenchReport> {
  const concurrency = envInt("BENCH_CONCURRENCY", 64);
  const durationMs = envInt("BENCH_DURATION_MS", 3_000);
  const rounds = Math.max(1, envInt("BENCH_ROUNDS", 3));
  const bench = await startBenchBroker({ databaseUrl: await server.createDatabase("warm") });
  const echo = new grpc.Server();
  try {
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
    const raw = (bytes: Buffer) => bytes;
    echo.addService(
      {
        get: { path, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
      },
      { get: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, sample) },
    );
    const echoPort = await new Promise<number>((resolve, reject) =>
      echo.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
    );

    const load = (address: string) => () =>
      runLoad({ address, path, metadata: bench.adminMetadata, next: () => request, concurrency, durationMs });
    const results = await interleave(rounds, { echo: load(`127.0.0.1:${echoPort}`), broker: load(bench.grpcAddress) });
    const ratios = results.broker.map((result, i) => result.perSecond / (results.echo[i]?.perSecond ?? Number.NaN));
    const ratio = median(ratios);
    const echoLoad = combine(results.echo);
    const brokerLoad = combine(results.broker);
    const totalCpu = (result: LoadResult) => result.cpuPerCallMicros + (result.databaseCpuPerCallMicros ?? 0);
    return {
      title: `(a) warm GetAccessToken over gRPC vs a bare grpc-js echo server: concurrency ${concurrency}, ${rounds} alternating rounds of ${durationMs / 1000} s, response ${sample.length} bytes, log level ${logLevel()}`,
      lines: [
        `echo server: ${formatLoad(echoLoad)}`,
        `broker:      ${formatLoad(brokerLoad)}`,
        `per-round throughput ratios: ${ratios.map((r) => r.toFixed(2)).join(", ")}`,
        // The load generator, both servers and PostgreSQL share this machine's cores: CPU spent
        // anywhere per call bounds throughput, the audit row's PostgreSQL work included.
        `CPU per call, all of it (this process + PostgreSQL): echo ${totalCpu(echoLoad).toFixed(0)} µs, broker ${totalCpu(brokerLoad).toFixed(0)} µs, ratio ${(totalCpu(echoLoad) / totalCpu(brokerLoad)).toFixed(2)}`,
      ],
      checks: [{ label: `throughput ratio broker/echo = ${ratio.toFixed(2)} (median of rounds)`, target: `≥ ${TARGET.toFixed(2)}`, verdict: verdict(ratio >= TARGET) }],
    };
  } finally {
    echo.forceShutdown();
    await bench.stop();
  }
}
