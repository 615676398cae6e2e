/**
 * The reasons no caller ever receives because they end a start-up (or a command) before any
 * listener accepts a call, each raised where it arises: starting the broker, opening or
 * rotating the local keyring, migrating the database, opening Vault. A reason the configuration
 * loader already refuses is raised from a configuration built past the loader, as a defence in
 * depth must still hold.
 */
import { chmod, cp, mkdtemp, readFile, rm, writeFile, appendFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuthenticator } from "../../src/auth/authenticator.js";
import { loadOrCreateLocalSigningKey } from "../../src/auth/local-signing-key.js";
import { loadConfig } from "../../src/config/load-config.js";
import type { JwtIssuerConfig } from "../../src/config/types.js";
import { createCipher } from "../../src/crypto/create-cipher.js";
import { addKeyVersion, keyringPath, openKeyring, readKeyring } from "../../src/crypto/keyring-file.js";
import { createVaultTransitCipher } from "../../src/crypto/vault-transit-cipher.js";
import type { ErrorReason } from "../../src/domain/error-reasons.js";
import { createLogger } from "../../src/observability/logger.js";
import { parseReturnToAllowList, resolveReturnTo } from "../../src/domain/return-to.js";
import { clientCredentials } from "../../src/providers/client-auth.js";
import { createProviderClient } from "../../src/providers/create-provider-client.js";
import { runMigrations } from "../../src/storage/migrate.js";
import { caught } from "../support/caught.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startInProcessBroker, type InProcessBrokerOptions } from "../support/in-process-broker.js";
import { testProviderConfig } from "../support/peers/provider-config.js";
import { startVaultEmulator, type VaultEmulator } from "../support/vault-transit-emulator.js";

const silent = createLogger({ level: "silent" });
const MIGRATIONS = fileURLToPath(new URL("../../src/storage/migrations/", import.meta.url));

let dir: string;
let vault: VaultEmulator;
let db: TestDatabase;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "oauth-broker-startup-reasons-"));
  vault = await startVaultEmulator();
  db = await createTestDatabase({ migrate: false });
});

afterAll(async () => {
  await db?.drop();
  await vault?.close();
  await rm(dir, { recursive: true, force: true });
});

/** What starting a broker in this process throws; it is expected to fail. */
function startUpFailure(options: Partial<InProcessBrokerOptions>) {
  return caught(startInProcessBroker({ yaml: "", databaseUrl: db.url, logger: silent, name: "oauth-broker-startup-reasons", ...options }));
}

/** The environment of a broker in its own data directory under `dir`. */
function brokerEnv(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return { DATABASE_URL: db.url, BROKER_DATA_DIR: join(dir, name), ...extra };
}

function expectReason(error: { reason: string }, reason: ErrorReason): void {
  expect(error.reason).toBe(reason);
}

describe("start-up reasons, where they arise", () => {
  it("LISTEN_ADDRESS_UNAVAILABLE: the broker cannot bind a listener address in use", async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    try {
      const address = taken.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      const error = await startUpFailure({ httpPort: port });
      expectReason(error, "LISTEN_ADDRESS_UNAVAILABLE");
      expect(error.code).toBe("failed_precondition");
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });

  it("LOCAL_KEYRING_INVALID: a keyring file that is not a keyring", async () => {
    const dataDir = join(dir, "invalid-keyring");
    await openKeyring(dataDir);
    await writeFile(keyringPath(dataDir), "{ this is not a keyring");
    const error = await caught(readKeyring(keyringPath(dataDir)));
    expectReason(error, "LOCAL_KEYRING_INVALID");
    expect(error.code).toBe("key_service_error");
  });

  it("LOCAL_KEYRING_LOCKED: a rotation while another holds the keyring's lock", async () => {
    const dataDir = join(dir, "locked-keyring");
    await openKeyring(dataDir);
    await writeFile(`${keyringPath(dataDir)}.lock`, "");
    const error = await caught(addKeyVersion(dataDir));
    expectReason(error, "LOCAL_KEYRING_LOCKED");
    expect(error.code).toBe("key_service_unavailable");
  });

  it("LOCAL_KEYRING_REFUSED_IN_PRODUCTION: production without Vault gets no local keyring", async () => {
    const loaded = loadConfig({ env: { ...brokerEnv("production"), NODE_ENV: "production", BROKER_ALLOW_LOCAL_KEYRING: "true" } });
    const error = await caught(createCipher({ ...loaded, allowLocalKeyringInProduction: false }, silent));
    expectReason(error, "LOCAL_KEYRING_REFUSED_IN_PRODUCTION");
    expect(error.code).toBe("failed_precondition");
  });

  it("LOCAL_SIGNING_KEY_INVALID: a local signing key readable by others, or corrupt", async () => {
    const exposed = join(dir, "signing-key-exposed");
    await loadOrCreateLocalSigningKey(exposed);
    // A mode check, not a failed read: it holds for a broker running as root too.
    await chmod(join(exposed, "signing-key.json"), 0o640);
    const readable = await caught(loadOrCreateLocalSigningKey(exposed));
    expectReason(readable, "LOCAL_SIGNING_KEY_INVALID");
    expect(readable.code).toBe("failed_precondition");

    const corrupt = join(dir, "signing-key-corrupt");
    await loadOrCreateLocalSigningKey(corrupt);
    await writeFile(join(corrupt, "signing-key.json"), "{ not a key", { mode: 0o600 });
    expectReason(await caught(loadOrCreateLocalSigningKey(corrupt)), "LOCAL_SIGNING_KEY_INVALID");
  });

  it("MIGRATION_CHANGED and MIGRATION_FAILED: an applied migration edited, a new one broken", async () => {
    await runMigrations(db.sql, { directory: MIGRATIONS, logger: silent });
    // Another directory: the files of one are read once per process.
    const edited = join(dir, "migrations-edited");
    await cp(MIGRATIONS, edited, { recursive: true });
    const first = join(edited, "0001_initial.sql");
    await writeFile(first, `${await readFile(first, "utf8")}\n-- edited after it was applied\n`);
    const changed = await caught(runMigrations(db.sql, { directory: edited, logger: silent }));
    expectReason(changed, "MIGRATION_CHANGED");
    expect(changed.code).toBe("failed_precondition");

    const broken = join(dir, "migrations-broken");
    await cp(MIGRATIONS, broken, { recursive: true });
    await appendFile(join(broken, "9999_broken.sql"), "create table integrations (id int);\n");
    const failed = await caught(runMigrations(db.sql, { directory: broken, logger: silent }));
    expectReason(failed, "MIGRATION_FAILED");
    expect(failed.code).toBe("internal");
  });

  it("VAULT_CREDENTIALS_MISSING: Vault without any credentials", async () => {
    const loaded = loadConfig({ env: brokerEnv("vault-credentials", { VAULT_ADDR: vault.url, VAULT_TOKEN: vault.rootToken }) });
    if (loaded.vault === undefined) throw new Error("the configuration has no Vault");
    const error = await caught(createVaultTransitCipher({ config: { ...loaded.vault, token: undefined }, logger: silent }));
    expectReason(error, "VAULT_CREDENTIALS_MISSING");
    expect(error.code).toBe("failed_precondition");
  });

  it("VAULT_KEY_MISSING: the transit key is absent and the broker may not create it", async () => {
    const env = { VAULT_ADDR: vault.url, VAULT_TOKEN: vault.rootToken, VAULT_TRANSIT_KEY: "never-created" };
    const error = await startUpFailure({ yaml: "vault:\n  createKey: false\n", env });
    expectReason(error, "VAULT_KEY_MISSING");
    expect(error.code).toBe("failed_precondition");
  });
});

/** Checks behind configuration the loader refuses, raised from a configuration built past it. */
describe("configuration reasons, where they arise", () => {
  it("CLIENT_ID_MISSING and CLIENT_SECRET_MISSING: a provider client without its credentials", () => {
    const noId = (() => {
      try {
        clientCredentials(testProviderConfig({ id: "nameless", kind: "oauth2", clientId: undefined }));
      } catch (error) {
        return error as { reason: string };
      }
      throw new Error("expected CLIENT_ID_MISSING");
    })();
    expectReason(noId, "CLIENT_ID_MISSING");
    const noSecret = (() => {
      try {
        clientCredentials(testProviderConfig({ id: "secretless", kind: "oauth2" }));
      } catch (error) {
        return error as { reason: string };
      }
      throw new Error("expected CLIENT_SECRET_MISSING");
    })();
    expectReason(noSecret, "CLIENT_SECRET_MISSING");
  });

  it("ENDPOINTS_MISSING and SANDBOX_NOT_RUNNING: provider clients that cannot be built", async () => {
    // Built without endpoints, the client finds out when a flow first needs them.
    const client = await createProviderClient(testProviderConfig({ id: "nowhere", kind: "oauth2", clientSecret: "s" }), { logger: silent });
    const endpointless = await caught(client.authorizationUrl({ state: "state", scopes: [], redirectUri: "https://app.example/callback", codeVerifier: "verifier" }));
    expectReason(endpointless, "ENDPOINTS_MISSING");
    const sandbox = await caught(createProviderClient(testProviderConfig({ id: "sandbox", kind: "sandbox" }), { logger: silent }));
    expectReason(sandbox, "SANDBOX_NOT_RUNNING");
  });

  it("TRUSTED_ISSUER_INVALID: trusted issuers the broker cannot verify callers' tokens with", async () => {
    const issuer: JwtIssuerConfig = {
      name: "idp",
      issuer: "https://idp.example",
      audiences: ["oauth-broker"],
      jwksUrl: undefined,
      staticKeys: ["not a key"],
      algorithms: ["RS256"],
      clockSkewSeconds: 30,
      maxTokenLifetimeSeconds: 3600,
      principalKind: "service",
      rolesClaim: "roles",
      allowAdmin: false,
      subjectClaim: "sub",
    };
    const refusals = [
      { issuers: [issuer] },
      { issuers: [{ ...issuer, staticKeys: [] }] },
      { issuers: [{ ...issuer, audiences: [] }] },
      { issuers: [] },
    ].map((options) => caught(Promise.resolve().then(() => createAuthenticator({ ...options, logger: silent }))));
    for (const error of await Promise.all(refusals)) {
      expectReason(error, "TRUSTED_ISSUER_INVALID");
      expect(error.code).toBe("failed_precondition");
    }
  });

  it("RETURN_TO_ALLOW_LIST_EMPTY and RETURN_TO_ALLOW_LIST_INVALID: an allow-list the loader would refuse", async () => {
    expectReason(await caught(Promise.resolve().then(() => resolveReturnTo("", []))), "RETURN_TO_ALLOW_LIST_EMPTY");
    expectReason(await caught(Promise.resolve().then(() => parseReturnToAllowList(["not a url"]))), "RETURN_TO_ALLOW_LIST_INVALID");
  });
});
