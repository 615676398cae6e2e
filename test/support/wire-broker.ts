/**
 * A broker started in this process from a YAML configuration (real PostgreSQL, local keyring
 * or Vault as the environment says), with locally signed credentials for any principal and a
 * gRPC and a Connect caller on its two listeners: the set-up of the error-reason wire tests.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config/load-config.js";
import { loadOrCreateLocalSigningKey, signLocalToken, type LocalSigningKey } from "../../src/auth/local-signing-key.js";
import { startBroker, type RunningBroker } from "../../src/server.js";
import { freePort } from "./free-port.js";
import { captureLogger, type CapturedLog } from "./log-capture.js";
import { wireCallers, type Wire, type WireCaller } from "./wire-call.js";

export interface WireBroker {
  readonly broker: RunningBroker;
  readonly httpPort: number;
  readonly grpcPort: number;
  readonly httpUrl: string;
  readonly dataDir: string;
  readonly log: CapturedLog;
  readonly callers: Record<Wire, WireCaller>;
  /** `Bearer …` of a locally signed credential. */
  bearer(subject: string, kind: "user" | "service", roles?: string[]): Promise<string>;
  close(): Promise<void>;
}

export interface WireBrokerOptions {
  readonly yaml: string;
  readonly databaseUrl: string;
  readonly env?: Readonly<Record<string, string>>;
  /** The HTTP listener's port, when peers must know the callback URLs beforehand. */
  readonly httpPort?: number;
}

export async function startWireBroker(options: WireBrokerOptions): Promise<WireBroker> {
  const dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-wire-"));
  try {
    const port = options.httpPort ?? (await freePort());
    const httpUrl = `http://127.0.0.1:${port}`;
    const configPath = join(dataDir, "broker.yaml");
    await writeFile(configPath, options.yaml);
    const captured = captureLogger();
    const broker = await startBroker({
      config: loadConfig({
        env: {
          DATABASE_URL: options.databaseUrl,
          BROKER_DATA_DIR: dataDir,
          BROKER_CONFIG: configPath,
          BROKER_GRPC_ADDR: "127.0.0.1:0",
          BROKER_HTTP_ADDR: `127.0.0.1:${port}`,
          BROKER_PUBLIC_URL: httpUrl,
          ...options.env,
        },
      }),
      logger: captured.logger,
    });
    const key: LocalSigningKey = await loadOrCreateLocalSigningKey(dataDir);
    const callers = wireCallers({ httpPort: broker.httpPort, grpcPort: broker.grpcPort });
    let stopped = false;
    return {
      broker,
      httpPort: broker.httpPort,
      grpcPort: broker.grpcPort,
      httpUrl,
      dataDir,
      log: captured.log,
      callers,
      bearer: async (subject, kind, roles) => `Bearer ${await signLocalToken(key, { subject, kind, ...(roles === undefined ? {} : { roles }) })}`,
      async close() {
        for (const caller of Object.values(callers)) caller.close();
        if (!stopped) await broker.stop();
        stopped = true;
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}
