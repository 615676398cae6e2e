/**
 * The whole broker started in this process, as `npm start` starts it: configuration read from
 * environment variables and a YAML file by the real loader, the gRPC listener on port 0 and the
 * HTTP listener on a known port (providers' redirect URIs name it before the broker starts), a
 * fresh data directory with the local signing key that tokens for callers are signed with.
 * Tests and benchmarks both start brokers through here.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadOrCreateLocalSigningKey, signLocalToken, type LocalSigningKey } from "../../src/auth/local-signing-key.js";
import { loadConfig } from "../../src/config/load-config.js";
import type { Logger } from "../../src/observability/logger.js";
import { startBroker, type RunningBroker } from "../../src/server.js";
import { freePort } from "./free-port.js";

export interface InProcessBroker {
  /** The running broker; another one after `restart`. */
  readonly broker: RunningBroker;
  readonly grpcAddress: string;
  readonly httpUrl: string;
  readonly dataDir: string;
  readonly signingKey: LocalSigningKey;
  /** A bearer token from the broker's local issuer (`ops` with the admin role: `token("ops", "service", ["admin"])`). */
  token(subject: string, kind: "user" | "service", roles?: string[]): Promise<string>;
  /** Stops the broker and starts it again on the same address, data and configuration. */
  restart(): Promise<void>;
  /** Stops the broker and removes its data directory. */
  stop(): Promise<void>;
}

export interface InProcessBrokerOptions {
  /** The broker.yaml; `${NAME}` references resolve against `env`. */
  readonly yaml: string;
  readonly databaseUrl?: string | undefined;
  /** More environment variables (secrets, VAULT_ADDR...). */
  readonly env?: Readonly<Record<string, string>>;
  readonly logger: Logger;
  /** The HTTP port, when something must know it before the broker starts; a free one otherwise. */
  readonly httpPort?: number;
  /** The data directory's name prefix under the temp directory. */
  readonly name?: string;
}

export async function startInProcessBroker(options: InProcessBrokerOptions): Promise<InProcessBroker> {
  const dataDir = await mkdtemp(join(tmpdir(), `${options.name ?? "oauth-broker-test"}-`));
  try {
    const port = options.httpPort ?? (await freePort());
    const httpUrl = `http://127.0.0.1:${port}`;
    const configPath = join(dataDir, "broker.yaml");
    await writeFile(configPath, options.yaml);
    const env: Record<string, string> = {
      ...options.env,
      BROKER_DATA_DIR: dataDir,
      BROKER_CONFIG: configPath,
      BROKER_GRPC_ADDR: "127.0.0.1:0",
      BROKER_HTTP_ADDR: `127.0.0.1:${port}`,
      BROKER_PUBLIC_URL: httpUrl,
    };
    if (options.databaseUrl !== undefined) env["DATABASE_URL"] = options.databaseUrl;
    const start = () => startBroker({ config: loadConfig({ env }), logger: options.logger });
    let broker = await start();
    const signingKey = await loadOrCreateLocalSigningKey(dataDir);
    return {
      get broker() {
        return broker;
      },
      get grpcAddress() {
        return `127.0.0.1:${broker.grpcPort}`;
      },
      httpUrl,
      dataDir,
      signingKey,
      token: (subject, kind, roles) => signLocalToken(signingKey, { subject, kind, ...(roles === undefined ? {} : { roles }) }),
      async restart() {
        await broker.stop();
        broker = await start();
      },
      async stop() {
        try {
          await broker.stop();
        } finally {
          await rm(dataDir, { recursive: true, force: true });
        }
      },
    };
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}
