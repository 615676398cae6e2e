/**
 * The Vault transit emulator against Vault's documented HTTP behaviour: envelope, status codes,
 * error bodies and strings, batch semantics, derived keys, rotation and token lifetimes. Other
 * tests trust the emulator, so these pin what they rely on.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manualClock } from "../support/manual-clock.js";
import { startVaultEmulator, type VaultEmulator } from "../support/vault-transit-emulator.js";

const PERMISSION_DENIED = { errors: ["1 error occurred:\n\t* permission denied\n\n"] };
const MISSING_CONTEXT =
  "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";
const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

interface Answer {
  status: number;
  body: Record<string, any>;
}

let vault: VaultEmulator;
const clock = manualClock(Date.now());

async function call(method: string, path: string, body?: unknown, token: string | null = vault.rootToken, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(`${vault.url}/v1/${path}`, {
    method,
    headers: { ...(token ? { "X-Vault-Token": token } : {}), ...(body ? { "content-type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

async function encrypt(key: string, plaintext: string, context?: string): Promise<string> {
  const answer = await call("POST", `transit/encrypt/${key}`, { plaintext: b64(plaintext), ...(context ? { context: b64(context) } : {}) });
  expect(answer.status).toBe(200);
  return answer.body["data"]["ciphertext"] as string;
}

async function decryptError(key: string, ciphertext: string, context?: string): Promise<Answer> {
  return call("POST", `transit/decrypt/${key}`, { ciphertext, ...(context ? { context: b64(context) } : {}) });
}

beforeAll(async () => {
  vault = await startVaultEmulator({ now: clock.nowMs });
  expect((await call("POST", "transit/keys/derived", { type: "aes256-gcm96", derived: true })).status).toBe(200);
  expect((await call("POST", "transit/keys/plain", { type: "aes256-gcm96" })).status).toBe(200);
});

afterAll(async () => {
  await vault.close();
});

describe("envelope and authentication", () => {
  it("wraps data in Vault's success envelope", async () => {
    const answer = await call("POST", "transit/encrypt/derived", { plaintext: b64("hello"), context: b64("row-1") });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ lease_id: "", renewable: false, lease_duration: 0, wrap_info: null, warnings: null, auth: null });
    expect(typeof answer.body["request_id"]).toBe("string");
    expect(answer.body["data"]).toEqual({ ciphertext: expect.stringMatching(/^vault:v1:[A-Za-z0-9+/]+=*$/), key_version: 1 });
  });

  it("stores nonce | ciphertext | tag, base64, behind vault:v<N>:", async () => {
    const ciphertext = await encrypt("derived", "twelve bytes", "row-1");
    const raw = Buffer.from(ciphertext.slice("vault:v1:".length), "base64");
    expect(raw.length).toBe(12 + "twelve bytes".length + 16);
  });

  it("answers 403 with the permission-denied body without a token or with an unknown one", async () => {
    expect(await call("GET", "transit/keys/derived", undefined, null)).toEqual({ status: 403, body: PERMISSION_DENIED });
    expect(await call("GET", "transit/keys/derived", undefined, "hvs.unknown")).toEqual({ status: 403, body: PERMISSION_DENIED });
  });

  it("accepts Authorization: Bearer and records X-Vault-Namespace", async () => {
    const answer = await call("GET", "transit/keys/derived", undefined, null, { authorization: `Bearer ${vault.rootToken}`, "x-vault-namespace": "team-a" });
    expect(answer.status).toBe(200);
    expect(vault.requests().at(-1)).toMatchObject({ path: "transit/keys/derived", namespace: "team-a", tokenPresent: true });
  });

  it("answers 404 with an empty errors list for a missing key", async () => {
    expect(await call("GET", "transit/keys/absent")).toEqual({ status: 404, body: { errors: [] } });
  });

  it("answers 503 Vault is sealed on every path while sealed, health included", async () => {
    vault.seal();
    try {
      expect(await call("GET", "transit/keys/derived")).toEqual({ status: 503, body: { errors: ["Vault is sealed"] } });
      expect(await call("POST", "transit/decrypt/derived", { ciphertext: "vault:v1:AAAA", context: b64("x") })).toEqual({
        status: 503,
        body: { errors: ["Vault is sealed"] },
      });
      expect((await call("GET", "sys/health", undefined, null)).body).toMatchObject({ sealed: true });
    } finally {
      vault.unseal();
    }
    expect((await call("GET", "transit/keys/derived")).status).toBe(200);
  });
});

describe("keys", () => {
  it("reads key information with Vault's field names", async () => {
    const answer = await call("GET", "transit/keys/derived");
    expect(answer.body["data"]).toMatchObject({
      name: "derived",
      type: "aes256-gcm96",
      derived: true,
      latest_version: 1,
      min_decryption_version: 1,
      min_encryption_version: 0,
      supports_encryption: true,
      supports_decryption: true,
      supports_derivation: true,
      keys: { "1": expect.any(Number) },
    });
  });

  it("refuses convergent encryption without derivation", async () => {
    const answer = await call("POST", "transit/keys/conv", { convergent_encryption: true });
    expect(answer).toEqual({ status: 400, body: { errors: ["convergent encryption requires derivation to be enabled"] } });
  });

  it("upserts a derived key on encrypt with create, and refuses it (403) with update only", async () => {
    const creator = vault.createToken({ ttlSeconds: 600, capabilities: { create: true, update: true } });
    const updater = vault.createToken({ ttlSeconds: 600, capabilities: { update: true } });
    expect(await call("POST", "transit/encrypt/upserted-2", { plaintext: b64("x"), context: b64("c") }, updater)).toEqual({
      status: 403,
      body: PERMISSION_DENIED,
    });
    expect(vault.key("upserted-2")).toBeUndefined();
    const answer = await call("POST", "transit/encrypt/upserted", { plaintext: b64("x"), context: b64("c") }, creator);
    expect(answer.status).toBe(200);
    expect(vault.key("upserted")?.derived).toBe(true);
    // With the key in place, update is enough.
    expect((await call("POST", "transit/encrypt/upserted", { plaintext: b64("y"), context: b64("c") }, updater)).status).toBe(200);
  });

  it("rotates, and min_decryption_version makes older ciphertexts fail with the documented message", async () => {
    await call("POST", "transit/keys/rot", { derived: true });
    const v1 = await encrypt("rot", "secret", "ctx");
    const rotated = await call("POST", "transit/keys/rot/rotate", {});
    expect(rotated.status).toBe(200);
    expect(rotated.body["data"]).toMatchObject({ latest_version: 2 });
    expect(await encrypt("rot", "secret", "ctx")).toMatch(/^vault:v2:/);
    const stillReadable = await decryptError("rot", v1, "ctx");
    expect(stillReadable.body["data"]).toEqual({ plaintext: b64("secret") });

    const rewrapped = await call("POST", "transit/rewrap/rot", { ciphertext: v1, context: b64("ctx") });
    expect(rewrapped.body["data"]).toEqual({ ciphertext: expect.stringMatching(/^vault:v2:/), key_version: 2 });

    expect(await call("POST", "transit/keys/rot/config", { min_decryption_version: 5 })).toEqual({
      status: 400,
      body: { errors: ["cannot set min decryption version of 5, latest key version is 2"] },
    });
    expect((await call("POST", "transit/keys/rot/config", { min_decryption_version: 2 })).status).toBe(200);
    expect((await call("GET", "transit/keys/rot")).body["data"]).toMatchObject({ min_decryption_version: 2 });
    expect(await decryptError("rot", v1, "ctx")).toEqual({
      status: 400,
      body: { errors: ["ciphertext or signature version is disallowed by policy (too old)"] },
    });
    const again = await decryptError("rot", rewrapped.body["data"]["ciphertext"] as string, "ctx");
    expect(again.body["data"]).toEqual({ plaintext: b64("secret") });
  });

  it("refuses rotation without the capability", async () => {
    const token = vault.createToken({ ttlSeconds: 600, capabilities: { update: true, read: true } });
    expect(await call("POST", "transit/keys/derived/rotate", {}, token)).toEqual({ status: 403, body: PERMISSION_DENIED });
  });
});

describe("single-item errors", () => {
  const cases: Array<[string, string, unknown, string]> = [
    ["missing plaintext", "transit/encrypt/derived", { context: b64("c") }, "missing plaintext to encrypt"],
    ["missing ciphertext", "transit/decrypt/derived", { context: b64("c") }, "missing ciphertext to decrypt"],
    ["no prefix", "transit/decrypt/derived", { ciphertext: "abc", context: b64("c") }, "invalid ciphertext: no prefix"],
    ["wrong number of fields", "transit/decrypt/derived", { ciphertext: "vault:v1", context: b64("c") }, "invalid ciphertext: wrong number of fields"],
    ["bad version", "transit/decrypt/derived", { ciphertext: "vault:vx:AAAA", context: b64("c") }, "invalid ciphertext: version number could not be decoded"],
    ["version too new", "transit/decrypt/derived", { ciphertext: "vault:v9:AAAA", context: b64("c") }, "invalid ciphertext: version is too new"],
    ["bad base64", "transit/decrypt/derived", { ciphertext: "vault:v1:!!!!", context: b64("c") }, "invalid ciphertext: could not decode base64"],
    ["too short", "transit/decrypt/derived", { ciphertext: `vault:v1:${Buffer.alloc(5).toString("base64")}`, context: b64("c") }, "invalid ciphertext length"],
    ["key not found", "transit/decrypt/absent", { ciphertext: "vault:v1:AAAA", context: b64("c") }, "encryption key not found"],
    ["derived key without context (encrypt)", "transit/encrypt/derived", { plaintext: b64("x") }, MISSING_CONTEXT],
  ];
  it.each(cases)("%s → 400 with Vault's message", async (_name, path, body, message) => {
    expect(await call("POST", path, body)).toEqual({ status: 400, body: { errors: [message] } });
  });

  it("refuses a derived key without context on decrypt, and a wrong context as failed authentication", async () => {
    const ciphertext = await encrypt("derived", "token-value", "row-a");
    expect(await decryptError("derived", ciphertext)).toEqual({ status: 400, body: { errors: [MISSING_CONTEXT] } });
    expect(await decryptError("derived", ciphertext, "row-b")).toEqual({ status: 400, body: { errors: ["cipher: message authentication failed"] } });
    const tampered = ciphertext.slice(0, -4) + (ciphertext.endsWith("AAA=") ? "BBB=" : "AAA=");
    expect((await decryptError("derived", tampered, "row-a")).body).toEqual({ errors: ["cipher: message authentication failed"] });
  });

  it("ignores the context for a key that is not derived", async () => {
    const ciphertext = await encrypt("plain", "value", "ctx-1");
    expect((await decryptError("plain", ciphertext, "other")).body["data"]).toEqual({ plaintext: b64("value") });
  });
});

describe("batches", () => {
  it("answers in input order, with references", async () => {
    const answer = await call("POST", "transit/encrypt/derived", {
      batch_input: [
        { plaintext: b64("one"), context: b64("r1"), reference: "a" },
        { plaintext: b64("two"), context: b64("r2"), reference: "b" },
      ],
    });
    expect(answer.status).toBe(200);
    const results = answer.body["data"]["batch_results"] as Array<Record<string, unknown>>;
    expect(results.map((item) => item["reference"])).toEqual(["a", "b"]);
    const decrypted = await call("POST", "transit/decrypt/derived", {
      batch_input: [
        { ciphertext: results[1]?.["ciphertext"], context: b64("r2") },
        { ciphertext: results[0]?.["ciphertext"], context: b64("r1") },
      ],
    });
    expect((decrypted.body["data"]["batch_results"] as Array<Record<string, unknown>>).map((item) => item["plaintext"])).toEqual([b64("two"), b64("one")]);
  });

  it("answers HTTP 400 with data.batch_results and no errors when one item fails", async () => {
    const good = await encrypt("derived", "good", "r1");
    const answer = await call("POST", "transit/decrypt/derived", {
      batch_input: [
        { ciphertext: good, context: b64("r1"), reference: "ok" },
        { ciphertext: good, context: b64("r2"), reference: "swapped" },
      ],
    });
    expect(answer.status).toBe(400);
    expect(answer.body["errors"]).toBeUndefined();
    expect(answer.body["data"]["batch_results"]).toEqual([
      { plaintext: b64("good"), reference: "ok" },
      { plaintext: "", error: "cipher: message authentication failed", reference: "swapped" },
    ]);
  });

  it("honours partial_failure_response_code only when some item succeeded", async () => {
    const good = await encrypt("derived", "good", "r1");
    const partial = await call("POST", "transit/decrypt/derived", {
      partial_failure_response_code: 207,
      batch_input: [
        { ciphertext: good, context: b64("r1") },
        { ciphertext: good, context: b64("r2") },
      ],
    });
    expect(partial.status).toBe(207);
    const total = await call("POST", "transit/decrypt/derived", { partial_failure_response_code: 207, batch_input: [{ ciphertext: good, context: b64("r2") }] });
    expect(total.status).toBe(400);
  });

  it("requires context in all items or none, and a non-empty batch", async () => {
    expect(
      await call("POST", "transit/encrypt/derived", { batch_input: [{ plaintext: b64("a"), context: b64("c") }, { plaintext: b64("b") }] }),
    ).toEqual({ status: 400, body: { errors: ["context should be set either in all the request blocks or in none"] } });
    expect(await call("POST", "transit/encrypt/derived", { batch_input: [] })).toEqual({ status: 400, body: { errors: ["missing batch input to process"] } });
  });

  it("rewraps a batch to the latest version without returning plaintext", async () => {
    await call("POST", "transit/keys/rw", { derived: true });
    const v1 = await encrypt("rw", "secret-1", "c1");
    await call("POST", "transit/keys/rw/rotate", {});
    const answer = await call("POST", "transit/rewrap/rw", { batch_input: [{ ciphertext: v1, context: b64("c1") }] });
    expect(answer.status).toBe(200);
    const [item] = answer.body["data"]["batch_results"] as Array<Record<string, unknown>>;
    expect(item).toEqual({ ciphertext: expect.stringMatching(/^vault:v2:/), key_version: 2, reference: "" });
    expect(JSON.stringify(answer.body)).not.toContain(b64("secret-1"));
  });
});

describe("tokens and logins", () => {
  it("looks up and renews a token, honours its TTL and explicit max TTL", async () => {
    const token = vault.createToken({ ttlSeconds: 60, renewable: true, policies: ["broker"], capabilities: { read: true }, explicitMaxTtlSeconds: 100 });
    const lookup = await call("GET", "auth/token/lookup-self", undefined, token);
    expect(lookup.body["data"]).toMatchObject({ id: token, ttl: 60, renewable: true, policies: ["broker"], creation_ttl: 60 });

    clock.advance(50_000);
    const renewed = await call("POST", "auth/token/renew-self", {}, token);
    expect(renewed.body["auth"]).toMatchObject({ client_token: token, lease_duration: 50, renewable: true });
    expect(renewed.body["warnings"]).toEqual(["TTL of requested lease exceeds the maximum allowed; capping the TTL"]);

    clock.advance(51_000);
    expect(await call("GET", "auth/token/lookup-self", undefined, token)).toEqual({ status: 403, body: PERMISSION_DENIED });
    expect(await call("GET", "transit/keys/derived", undefined, token)).toEqual({ status: 403, body: PERMISSION_DENIED });
  });

  it("grants the capabilities of the named policies a token carries", async () => {
    vault.definePolicy("reader", { read: true });
    const token = vault.createToken({ ttlSeconds: 600, policies: ["default", "reader"] });
    expect((await call("GET", "transit/keys/derived", undefined, token)).status).toBe(200);
    expect(await call("POST", "transit/encrypt/derived", { plaintext: b64("x"), context: b64("c") }, token)).toEqual({ status: 403, body: PERMISSION_DENIED });
    vault.setPolicy(token, { update: true });
    expect((await call("POST", "transit/encrypt/derived", { plaintext: b64("x"), context: b64("c") }, token)).status).toBe(200);
    expect((await call("GET", "transit/keys/derived", undefined, token)).status).toBe(403);
  });

  it("refuses to renew a token that is not renewable", async () => {
    const token = vault.createToken({ ttlSeconds: 60, renewable: false });
    expect(await call("POST", "auth/token/renew-self", {}, token)).toEqual({ status: 400, body: { errors: ["lease is not renewable"] } });
  });

  it("logs in with AppRole and Kubernetes", async () => {
    vault.addAppRole("role-1", "secret-1", 30);
    const login = await call("POST", "auth/approle/login", { role_id: "role-1", secret_id: "secret-1" }, null);
    expect(login.status).toBe(200);
    expect(login.body["auth"]).toMatchObject({ client_token: expect.any(String), lease_duration: 30, renewable: true });
    const token = login.body["auth"]["client_token"] as string;
    expect((await call("GET", "transit/keys/derived", undefined, token)).status).toBe(200);
    expect(await call("POST", "auth/approle/login", { role_id: "role-1", secret_id: "wrong" }, null)).toEqual({
      status: 400,
      body: { errors: ["invalid role or secret ID"] },
    });

    vault.addKubernetesRole("broker", "jwt-value", 30);
    expect((await call("POST", "auth/kubernetes/login", { role: "broker", jwt: "jwt-value" }, null)).body["auth"]).toMatchObject({ lease_duration: 30 });
    expect((await call("POST", "auth/kubernetes/login", { role: "broker", jwt: "forged" }, null)).status).toBe(403);
  });
});
