/**
 * A broker started in this process for a benchmark, configured as in production except for the
 * per-principal rate limit (which would measure the limiter, not the path) and whatever the
 * benchmark adds. It logs at LOG_LEVEL (default info, like production) to /dev/null through the
 * destination `npm start` writes stdout with (logger.ts, `logDestination`): the cost of every log
 * line stays in the measurement without flooding the terminal.
 */
import * as grpc from "@grpc/grpc-js";
import type { LocalSigningKey } from "../../src/auth/local-signing-key.js";
import { createLogger, logDestination, type Logger } from "../../src/observability/logger.js";
import type { RunningBroker } from "../../src/server.js";
import { freePort } from "../../test/support/free-port.js";
import { startInProcessBroker } from "../../test/support/in-process-broker.js";

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
  const running = await startInProcessBroker({
    yaml: `${UNLIMITED_TOKEN_CALLS}sandbox:\n  enabled: true\n${options.extraYaml ?? ""}`,
    databaseUrl: options.databaseUrl,
    env: { LOG_LEVEL: logLevel() },
    logger: benchLogger(),
    name: "oauth-broker-bench",
  });
  const adminMetadata = new grpc.Metadata();
  adminMetadata.set("authorization", `Bearer ${await running.token("bench", "service", ["admin"])}`);
  return {
    broker: running.broker,
    grpcAddress: running.grpcAddress,
    httpUrl: running.httpUrl,
    dataDir: running.dataDir,
    signingKey: running.signingKey,
    adminMetadata,
    stop: () => running.stop(),
  };
}
