/**
 * The re-wrap job against real PostgreSQL and the Vault transit emulator: every token set and
 * session ends at the latest key version while concurrent reads keep succeeding, a token written
 * concurrently is never overwritten, an interrupted run resumes, swapped ciphertexts fail closed,
 * and no table ever holds a token in plaintext.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createSecret } from "../../src/config/secret.js";
import type { Cipher } from "../../src/domain/ports.js";
import { BrokerError } from "../../src/domain/errors.js";
import { captureLogger } from "../support/log-capture.js";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import type { RotatableCipher } from "../../src/crypto/rotatable-cipher.js";
import { createVaultTransitCipher } from "../../src/crypto/vault-transit-cipher.js";
import { rewrapAll, type RewrapProgress } from "../../src/jobs/rewrap.js";
import { createRewrapStore } from "../../src/storage/rewrap-store.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startVaultEmulator, type VaultEmulator } from "../support/vault-transit-emulator.js";
import { awaitedLater, waitUntil } from "../support/wait-until.js";

interface Seeded {
  readonly tokens: Map<string, { access: string; refresh: string | null }>;
  readonly verifiers: Map<string, string>;
}

let db: TestDatabase;
let vault: VaultEmulator;
let cipher: RotatableCipher;
let logs: ReturnType<typeof captureLogger>;
let keyCounter = 0;

/** Fresh tables and a fresh transit key per test, so versions start at 1. */
async function freshCipher(): Promise<RotatableCipher> {
  keyCounter += 1;
  return createVaultTransitCipher({
    config: {
      address: vault.url,
      token: createSecret(vault.rootToken),
      roleId: undefined,
      secretId: undefined,
      kubernetesRole: undefined,
      kubernetesTokenPath: "/dev/null",
      namespace: undefined,
      mount: "transit",
      key: `rewrap-${keyCounter}`,
      createKey: true,
      timeoutMs: 5000,
    },
    logger: logs.logger,
  });
}

async function seed(target: Cipher, integrations: number, sessions: number): Promise<Seeded> {
  const tokens = new Map<string, { access: string; refresh: string | null }>();
  for (let i = 0; i < integrations; i += 1) {
    const id = randomUUID();
    const access = `ya29.access-${i}-${randomUUID()}`;
    const refresh = i % 2 === 0 ? `1//refresh-${i}-${randomUUID()}` : null;
    tokens.set(id, { access, refresh });
    const [accessCiphertext, refreshCiphertext] = await target.encryptBatch([
      { plaintext: access, context: id },
      ...(refresh === null ? [] : [{ plaintext: refresh, context: id }]),
    ]);
    await db.sql`insert into integrations (id, user_id, provider, external_account_id) values (${id}, ${`user-${i}`}, 'google', ${`ext-${i}`})`;
    await db.sql`
      insert into token_sets (integration_id, access_token_ciphertext, refresh_token_ciphertext, expires_at)
      values (${id}, ${accessCiphertext ?? ""}, ${refreshCiphertext ?? null}, now() + interval '1 hour')`;
  }
  const verifiers = new Map<string, string>();
  for (let i = 0; i < sessions; i += 1) {
    const id = randomUUID();
    const verifier = `verifier-${i}-${randomUUID()}`;
    verifiers.set(id, verifier);
    const ciphertext = await target.encrypt({ plaintext: verifier, context: id });
    await db.sql`
      insert into authorization_sessions (id, state_hash, user_id, provider, code_verifier_ciphertext, expires_at)
      values (${id}, ${randomUUID()}, 'user', 'google', ${ciphertext}, now() + interval '10 minutes')`;
  }
  return { tokens, verifiers };
}

interface TokenRow {
  id: string;
  access: string;
  refresh: string | null;
  version: string;
}

async function tokenRows(): Promise<TokenRow[]> {
  return db.sql<TokenRow[]>`
    select integration_id::text as id, access_token_ciphertext as access, refresh_token_ciphertext as refresh, version::text as version
    from token_sets order by integration_id`;
}

async function sessionRows(): Promise<Array<{ id: string; verifier: string }>> {
  return db.sql<Array<{ id: string; verifier: string }>>`
    select id::text as id, code_verifier_ciphertext as verifier from authorization_sessions order by id`;
}

/** Every table as text, for plaintext scans. */
async function everyTableAsText(): Promise<string> {
  const tables = await db.sql<Array<{ name: string }>>`
    select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`;
  const dumps: string[] = [];
  for (const { name } of tables) {
    const rows = await db.sql.unsafe(`select t::text as row from ${name} t`);
    dumps.push(...rows.map((row) => String(row["row"])));
  }
  return dumps.join("\n");
}

beforeAll(async () => {
  db = await createTestDatabase();
  vault = await startVaultEmulator();
  logs = captureLogger();
});

beforeEach(async () => {
  await db.sql`delete from authorization_sessions`;
  await db.sql`delete from integrations`;
  await cipher?.close();
  cipher = await freshCipher();
});

afterAll(async () => {
  await cipher?.close();
  await vault?.close();
  await db?.drop();
});

describe("rewrapAll", () => {
  it("re-wraps every ciphertext to the latest version online, with zero failed reads", async () => {
    const seeded = await seed(cipher, 60, 20);
    expect(await cipher.rotate()).toBe(2);

    let stop = false;
    let reads = 0;
    const failures: unknown[] = [];
    const reader = awaitedLater(
      (async () => {
        while (!stop) {
          const rows = await db.sql<TokenRow[]>`
            select integration_id::text as id, access_token_ciphertext as access, refresh_token_ciphertext as refresh, version::text as version
            from token_sets order by random() limit 4`;
          for (const row of rows) {
            try {
              const expected = seeded.tokens.get(row.id);
              const inputs = [{ ciphertext: row.access, context: row.id }, ...(row.refresh === null ? [] : [{ ciphertext: row.refresh, context: row.id }])];
              const plaintexts = await cipher.decryptBatch(inputs);
              expect(plaintexts).toEqual([expected?.access, ...(row.refresh === null ? [] : [expected?.refresh])]);
              reads += 1;
            } catch (error) {
              failures.push(error);
            }
          }
        }
      })(),
    );

    const progress: RewrapProgress[] = [];
    const result = await rewrapAll({ store: createRewrapStore(db.sql), cipher, logger: logs.logger, batchSize: 7, onProgress: (p) => progress.push(p) });
    // Keep reading after the job, against the re-wrapped rows: two more rounds of four, and
    // enough in all for the count below, however the reader and the job shared the machine.
    const attemptsAtEnd = reads + failures.length;
    await waitUntil(() => reads + failures.length >= Math.max(attemptsAtEnd + 8, 11), "reads of the re-wrapped rows");
    stop = true;
    await reader;

    expect(failures).toEqual([]);
    expect(reads).toBeGreaterThan(10);
    expect(result).toEqual({ rewrapped: 80, skipped: 0, failed: 0, latestVersion: 2 });
    expect(progress.filter((p) => p.table === "token_sets").at(-1)).toEqual({ table: "token_sets", done: 60, total: 60 });
    expect(progress.filter((p) => p.table === "authorization_sessions").at(-1)).toEqual({ table: "authorization_sessions", done: 20, total: 20 });

    for (const row of await tokenRows()) {
      expect(cipher.versionOf(row.access)).toBe(2);
      if (row.refresh !== null) expect(cipher.versionOf(row.refresh)).toBe(2);
      expect(row.version).toBe("1");
    }
    for (const row of await sessionRows()) expect(cipher.versionOf(row.verifier)).toBe(2);

    // Now the old version can be retired, and everything still decrypts.
    const key = `rewrap-${keyCounter}`;
    const config = await fetch(`${vault.url}/v1/transit/keys/${key}/config`, {
      method: "POST",
      headers: { "X-Vault-Token": vault.rootToken, "content-type": "application/json" },
      body: JSON.stringify({ min_decryption_version: 2 }),
    });
    expect(config.status).toBe(200);
    for (const row of await tokenRows()) {
      expect(await cipher.decrypt({ ciphertext: row.access, context: row.id })).toBe(seeded.tokens.get(row.id)?.access);
    }
    for (const row of await sessionRows()) {
      expect(await cipher.decrypt({ ciphertext: row.verifier, context: row.id })).toBe(seeded.verifiers.get(row.id));
    }

    // A second run finds nothing left to do.
    expect(await rewrapAll({ store: createRewrapStore(db.sql), cipher, logger: logs.logger })).toEqual({ rewrapped: 0, skipped: 0, failed: 0, latestVersion: 2 });
  });

  it("re-wraps inside Vault: the job never asks Vault to decrypt", async () => {
    await seed(cipher, 10, 3);
    await cipher.rotate();
    const decrypts = vault.requestCount(`transit/decrypt/rewrap-${keyCounter}`);
    const rewraps = vault.requestCount(`transit/rewrap/rewrap-${keyCounter}`);
    const result = await rewrapAll({ store: createRewrapStore(db.sql), cipher, logger: logs.logger, batchSize: 100 });
    expect(result.rewrapped).toBe(13);
    expect(vault.requestCount(`transit/decrypt/rewrap-${keyCounter}`)).toBe(decrypts);
    expect(vault.requestCount(`transit/rewrap/rewrap-${keyCounter}`) - rewraps).toBe(2);
  });

  it("never overwrites a token written concurrently, and leaves the version alone", async () => {
    const seeded = await seed(cipher, 3, 0);
    await cipher.rotate();
    const [target] = [...seeded.tokens.keys()].sort();
    let raced = false;
    // A refresh that stores new tokens between the job's read and its write.
    const racing: Cipher = {
      ...cipher,
      rewrapBatch: async (inputs) => {
        const out = await cipher.rewrapBatch(inputs);
        if (!raced && target !== undefined) {
          raced = true;
          const [access, refresh] = await cipher.encryptBatch([
            { plaintext: "fresh-access", context: target },
            { plaintext: "fresh-refresh", context: target },
          ]);
          await db.sql`
            update token_sets set access_token_ciphertext = ${access ?? ""}, refresh_token_ciphertext = ${refresh ?? ""}, version = version + 1
            where integration_id = ${target}`;
        }
        return out;
      },
    };
    const result = await rewrapAll({ store: createRewrapStore(db.sql), cipher: racing, logger: logs.logger, batchSize: 10 });
    expect(raced).toBe(true);
    expect(result).toMatchObject({ rewrapped: 2, skipped: 1, failed: 0 });

    for (const row of await tokenRows()) {
      const plaintexts = await cipher.decryptBatch([
        { ciphertext: row.access, context: row.id },
        ...(row.refresh === null ? [] : [{ ciphertext: row.refresh, context: row.id }]),
      ]);
      if (row.id === target) {
        expect(plaintexts).toEqual(["fresh-access", "fresh-refresh"]);
        expect(row.version).toBe("2");
      } else {
        const expected = seeded.tokens.get(row.id);
        expect(plaintexts).toEqual([expected?.access, ...(expected?.refresh ? [expected.refresh] : [])]);
        expect(row.version).toBe("1");
      }
      expect(cipher.versionOf(row.access)).toBe(2);
    }
  });

  it("stops between batches when aborted and resumes where it stopped", async () => {
    await seed(cipher, 12, 0);
    await cipher.rotate();
    const controller = new AbortController();
    const first = await rewrapAll({
      store: createRewrapStore(db.sql),
      cipher,
      logger: logs.logger,
      batchSize: 5,
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });
    expect(first.rewrapped).toBe(5);
    const remaining = (await tokenRows()).filter((row) => cipher.versionOf(row.access) < 2);
    expect(remaining).toHaveLength(7);
    const second = await rewrapAll({ store: createRewrapStore(db.sql), cipher, logger: logs.logger, batchSize: 5 });
    expect(second.rewrapped).toBe(7);
    expect((await tokenRows()).every((row) => cipher.versionOf(row.access) === 2)).toBe(true);
  });

  it("fails closed on swapped ciphertexts: reads error, the job reports those rows and re-wraps the rest", async () => {
    const seeded = await seed(cipher, 4, 0);
    const [a, b] = [...seeded.tokens.keys()];
    const rows = await tokenRows();
    const rowA = rows.find((row) => row.id === a);
    const rowB = rows.find((row) => row.id === b);
    await db.sql`update token_sets set access_token_ciphertext = ${rowB?.access ?? ""} where integration_id = ${a ?? ""}`;
    await db.sql`update token_sets set access_token_ciphertext = ${rowA?.access ?? ""} where integration_id = ${b ?? ""}`;
    for (const [row, other] of [
      [a, rowB],
      [b, rowA],
    ] as const) {
      const error = await cipher.decrypt({ ciphertext: other?.access ?? "", context: row ?? "" }).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(error).toBeInstanceOf(BrokerError);
      expect((error as BrokerError).code).toBe("key_service_error");
    }

    await cipher.rotate();
    const result = await rewrapAll({ store: createRewrapStore(db.sql), cipher, logger: logs.logger, batchSize: 10 });
    expect(result).toMatchObject({ rewrapped: 2, skipped: 0, failed: 2 });
    expect(logs.log.text()).toContain(`cannot re-wrap token_sets row ${a}`);
  });

  it("keeps every table free of plaintext tokens, before and after a re-wrap", async () => {
    const seeded = await seed(cipher, 8, 4);
    const secrets = [
      ...[...seeded.tokens.values()].flatMap((token) => [token.access, ...(token.refresh === null ? [] : [token.refresh])]),
      ...seeded.verifiers.values(),
    ];
    const check = async () => {
      const dump = await everyTableAsText();
      for (const value of secrets) {
        expect(dump).not.toContain(value);
        expect(dump).not.toContain(Buffer.from(value).toString("base64"));
      }
      for (const row of await tokenRows()) expect(row.access).toMatch(/^vault:v\d+:/);
    };
    await check();
    await cipher.rotate();
    await rewrapAll({ store: createRewrapStore(db.sql), cipher, logger: logs.logger });
    await check();
    for (const value of secrets) expect(logs.log.text()).not.toContain(value);
  });

  it("re-wraps local keyring ciphertexts the same way", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "rewrap-keyring-"));
    try {
      const local = await createLocalKeyringCipher({ dataDir, logger: logs.logger });
      const seeded = await seed(local, 5, 2);
      await local.rotate();
      expect(await rewrapAll({ store: createRewrapStore(db.sql), cipher: local, logger: logs.logger })).toEqual({ rewrapped: 7, skipped: 0, failed: 0, latestVersion: 2 });
      for (const row of await tokenRows()) {
        expect(row.access).toMatch(/^local:v2:/);
        expect(await local.decrypt({ ciphertext: row.access, context: row.id })).toBe(seeded.tokens.get(row.id)?.access);
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
