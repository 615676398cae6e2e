/**
 * A broker started in this process for a benchmark, configured as in production except for the
 * per-principal rate limit (which would measure the limiter, not the path) and whatever the
 * benchmark adds. It logs at LOG_LEVEL (default info, like production) to /dev/null through the
 * destination `npm start` writes stdout with (logger.ts, `logDestination`): the cost of every log
 * line stays in the measurement without flooding the terminal.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadConfig } from "../../src/config/load-config.js";
import { loadOrCreateLocalSigningKey, signLocalToken, type LocalSigningKey } from "../../src/auth/local-signing-key.js";
import { createLogger, logDestination, type Logger } from "../../src/observability/logger.js";
import { startBroker, type RunningBroker } from "../../src/server.js";
import { freePort } from "../../test/support/free-port.js";

export { freePort };

export const UNLIMITED_TOKEN_CALLS = "limits:\n  perPrincipal:\n    token: { ratePerSecond: 1000000, burst: 1000000 }\n";

export interface BenchBroker {
  readonly broker: RunningBroker;
  readonly grpcAddress: string;
  readonly httpUrl: string;
  readonly dataDir: string;
  readonly signingKey: LocalSigningKey;
  /** `authorization: Bearer <admin token>`: may fetch any integration's token. */
  readonly adminMetadata: grpc.Metadata;
  stop(): Promise<void>;
}

export function logLevel(): string {
  return process.env["LOG_LEVEL"] ?? "info";
}

/** A logger at LOG_LEVEL writing to /dev/null the way `npm start` writes to stdout. */
export function benchLogger(): Logger {
  return createLogger({ level: logLevel(), destination: logDestination("/dev/null") });
}

export async function startBenchBroker(options: { databaseUrl?: string | undefined; extraYaml?: string } = {}): Promise<BenchBroker> {
  const dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-bench-"));
  const port = await freePort();
  const httpUrl = `http://127.0.0.1:${port}`;
  const configPath = join(dataDir, "bench.yaml");
  await writeFile(configPath, `${UNLIMITED_TOKEN_CALLS}sandbox:\n  enabled: true\n${options.extraYaml ?? ""}`);
  const env: Record<string, string> = {
    BROKER_DATA_DIR: dataDir,
    BROKER_CONFIG: configPath,
    BROKER_GRPC_ADDR: "127.0.0.1:0",
    BROKER_HTTP_ADDR: `127.0.0.1:${port}`,
    BROKER_PUBLIC_URL: httpUrl,
    LOG_LEVEL: logLevel(),
  };
  if (options.databaseUrl !== undefined) env["DATABASE_URL"] = options.databaseUrl;
  const broker = await startBroker({
    config: loadConfig({ env }),
    logger: benchLogger(),
  });
  const signingKey = await loadOrCreateLocalSigningKey(dataDir);
  const admin = await signLocalToken(signingKey, { subject: "bench", kind: "service", roles: ["admin"] });
  const adminMetadata = new grpc.Metadata();
  adminMetadata.set("authorization", `Bearer ${admin}`);
  return {
    broker,
    grpcAddress: `127.0.0.1:${broker.grpcPort}`,
    httpUrl,
    dataDir,
    signingKey,
    adminMetadata,
    async stop() {
      await broker.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
