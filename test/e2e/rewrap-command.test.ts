/** `npm run rewrap -- --rotate` as an operator runs it: rotate the key, re-wrap every row. */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { createLogger } from "../../src/observability/logger.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

const run = promisify(execFile);
let db: TestDatabase;
const silent = createLogger({ level: "silent" });
let data: BrokerDataDir;

beforeAll(async () => {
  db = await createTestDatabase();
  data = await createBrokerDataDir("oauth-broker-rewrap", silent);
});
afterAll(async () => {
  await db?.drop();
  await data?.remove();
});

it("rotates the local key and re-wraps stored ciphertexts to the new version", async () => {
  const { cipher } = data;
  const id = randomUUID();
  const ciphertext = await cipher.encrypt({ plaintext: "access-token-value", context: id });
  expect(ciphertext).toMatch(/^local:v1:/);
  await db.sql`insert into integrations (id, user_id, provider, external_account_id) values (${id}, 'alice', 'sandbox', 'a')`;
  await db.sql`insert into token_sets (integration_id, access_token_ciphertext, expires_at) values (${id}, ${ciphertext}, now() + interval '1 hour')`;

  const { stdout } = await run(process.execPath, ["--import", "tsx", "src/cli/rewrap.ts", "--rotate"], {
    env: { PATH: process.env["PATH"] ?? "", DATABASE_URL: db.url, BROKER_DATA_DIR: data.dir, LOG_LEVEL: "warn" },
  });
  expect(stdout).toContain("key rotated: new ciphertexts use version 2");
  expect(stdout).toMatch(/re-wrapped 1 ciphertexts to version 2/);
  const [row] = await db.sql<{ access_token_ciphertext: string }[]>`select access_token_ciphertext from token_sets`;
  expect(row?.access_token_ciphertext).toMatch(/^local:v2:/);
  const reloaded = await createLocalKeyringCipher({ dataDir: data.dir, logger: silent });
  expect(await reloaded.decrypt({ ciphertext: row!.access_token_ciphertext, context: id })).toBe("access-token-value");
}, 60_000);
