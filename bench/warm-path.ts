/**
 * Benchmark (a): GetAccessToken's warm path over gRPC against a bare @grpc/grpc-js echo server,
 * same client, concurrency and message sizes, measured in one run so the ratio survives a noisy
 * machine. Target: the broker reaches ≥ 0.8 of the echo server's throughput.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { loadConfig } from "../src/config/load-config.js";
import { loadOrCreateLocalSigningKey, signLocalToken } from "../src/auth/local-signing-key.js";
import { startBroker } from "../src/server.js";
import { createLogger } from "../src/observability/logger.js";
import { GetAccessTokenRequestSchema, GetAccessTokenResponseSchema, TokenService } from "../src/gen/oauthbroker/v1/token_service_pb.js";
import { connectSandboxAccount } from "../test/support/sandbox-connect.js";

const CONCURRENCY = Number(process.env["BENCH_CONCURRENCY"] ?? 64);
const DURATION_MS = Number(process.env["BENCH_DURATION_MS"] ?? 8_000);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Result {
  readonly requests: number;
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
}

async function load(address: string, path: string, request: Buffer, metadata: grpc.Metadata): Promise<Result> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const identity = (b: Buffer) => b;
  const once = () =>
    new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(path, identity, identity, request, metadata, (error) => (error ? reject(error) : resolve())),
    );
  for (let i = 0; i < 200; i++) await once();
  const latencies: number[] = [];
  const deadline = performance.now() + DURATION_MS;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const t = performance.now();
        await once();
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  client.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { requests: latencies.length, perSecond: latencies.length / elapsed, p50: at(0.5), p99: at(0.99) };
}

export async function benchWarmPath(): Promise<string[]> {
  const dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-bench-"));
  const port = await freePort();
  const httpUrl = `http://127.0.0.1:${port}`;
  // The per-principal limit would measure the limiter, not the path.
  const configPath = join(dataDir, "bench.yaml");
  await writeFile(configPath, "limits:\n  perPrincipal:\n    token: { ratePerSecond: 1000000, burst: 1000000 }\n");
  const broker = await startBroker({
    config: loadConfig({
      env: {
        BROKER_DATA_DIR: dataDir,
        BROKER_CONFIG: configPath,
        BROKER_GRPC_ADDR: "127.0.0.1:0",
        BROKER_HTTP_ADDR: `127.0.0.1:${port}`,
        BROKER_PUBLIC_URL: httpUrl,
        LOG_LEVEL: "warn",
      },
    }),
    logger: createLogger({ level: "warn" }),
  });
  try {
    const key = await loadOrCreateLocalSigningKey(dataDir);
    const user = await signLocalToken(key, { subject: "bench-user", kind: "user" });
    const admin = await signLocalToken(key, { subject: "bench", kind: "service", roles: ["admin"] });
    await connectSandboxAccount(httpUrl, user, "bench-account");
    const request = Buffer.from(
      toBinary(GetAccessTokenRequestSchema, create(GetAccessTokenRequestSchema, { userId: "bench-user", provider: "sandbox", minValidFor: durationFromMs(30_000) })),
    );
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${admin}`);
    const address = `127.0.0.1:${broker.grpcPort}`;
    const path = `/${TokenService.typeName}/GetAccessToken`;

    // A real response of the broker, echoed back by the bare server: same sizes on the wire.
    const sample = await new Promise<Buffer>((resolve, reject) => {
      const client = new grpc.Client(address, grpc.credentials.createInsecure());
      client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, request, metadata, (error, response) =>
        error || !response ? reject(error) : resolve(response),
      );
    });
    void fromBinary(GetAccessTokenResponseSchema, sample);
    const echo = new grpc.Server();
    echo.addService(
      { get: { path, requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b } },
      { get: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, sample) },
    );
    const echoPort = await new Promise<number>((resolve, reject) =>
      echo.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
    );

    const echoResult = await load(`127.0.0.1:${echoPort}`, path, request, metadata);
    const brokerResult = await load(address, path, request, metadata);
    echo.forceShutdown();
    const ratio = brokerResult.perSecond / echoResult.perSecond;
    const f = (r: Result) => `${r.perSecond.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms (${r.requests} requests)`;
    return [
      `(a) warm GetAccessToken over gRPC, concurrency ${CONCURRENCY}, ${DURATION_MS / 1000} s each, response ${sample.length} bytes`,
      `    echo server: ${f(echoResult)}`,
      `    broker:      ${f(brokerResult)}`,
      `    throughput ratio broker/echo = ${ratio.toFixed(2)} (target ≥ 0.80: ${ratio >= 0.8 ? "met" : "NOT met"})`,
    ];
  } finally {
    await broker.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
