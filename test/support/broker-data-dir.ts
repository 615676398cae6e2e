/**
 * A data directory that broker processes share with the test that starts them: the keyring and
 * the local signing key exist before the first broker starts, so every replica uses the same
 * ones, the test encrypts grants exactly as the brokers decrypt them, and its tokens are
 * accepted by each replica. Removing it removes the embedded PostgreSQL's server home too,
 * which lives outside the directory when the tests run as root.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadOrCreateLocalSigningKey, signLocalToken } from "../../src/auth/local-signing-key.js";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import type { Cipher } from "../../src/domain/ports.js";
import type { Logger } from "../../src/observability/logger.js";
import { rootServerHome } from "../../src/storage/embedded-postgres-layout.js";
import { startBrokerProcess, type BrokerProcess } from "./broker-process.js";

export interface BrokerDataDir {
  readonly dir: string;
  /** The keyring the brokers use. */
  readonly cipher: Cipher;
  /** A bearer token of `ops` with the admin role. */
  readonly adminToken: string;
  /** A bearer token from the brokers' local issuer. */
  token(subject: string, kind: "user" | "service", roles?: readonly string[]): Promise<string>;
  /** Writes broker.yaml, which every broker started afterwards reads (none is read before). */
  writeConfig(lines: readonly string[]): Promise<void>;
  /**
   * A broker process on this data directory and configuration; `env` adds DATABASE_URL (the
   * embedded server without it), secrets, a known HTTP address... `idleMs` as for startBrokerProcess.
   */
  startBroker(env: Record<string, string>, idleMs?: number): Promise<BrokerProcess>;
  remove(): Promise<void>;
}

export async function createBrokerDataDir(name: string, logger: Logger): Promise<BrokerDataDir> {
  const dir = await mkdtemp(join(tmpdir(), `${name}-`));
  const configPath = join(dir, "broker.yaml");
  const cipher = await createLocalKeyringCipher({ dataDir: dir, logger });
  const signingKey = await loadOrCreateLocalSigningKey(dir);
  const adminToken = await signLocalToken(signingKey, { subject: "ops", kind: "service", roles: ["admin"] });
  let configured = false;
  return {
    dir,
    cipher,
    adminToken,
    token: (subject, kind, roles) => signLocalToken(signingKey, { subject, kind, roles }),
    async writeConfig(lines) {
      await writeFile(configPath, lines.join("\n"));
      configured = true;
    },
    // A cold start of several replicas at once on a loaded machine talks, but slowly.
    startBroker: (env, idleMs = 60_000) =>
      startBrokerProcess({ ...env, BROKER_DATA_DIR: dir, ...(configured ? { BROKER_CONFIG: configPath } : {}) }, idleMs),
    async remove() {
      await rm(rootServerHome(join(dir, "postgres")), { recursive: true, force: true });
      await rm(dir, { recursive: true, force: true });
    },
  };
}
