/**
 * The Vault transit cipher against the emulator over real HTTP: round trips, batches, context
 * binding, error mapping (sealed, 5xx, timeout, network, permission), start-up checks on the key,
 * token renewal and re-login, and that no secret reaches the log.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createSecret } from "../../src/config/secret.js";
import type { VaultConfig } from "../../src/config/types.js";
import { BrokerError } from "../../src/domain/errors.js";
import type { Logger } from "../../src/observability/logger.js";
import { captureLogger } from "../support/log-capture.js";
import type { RotatableCipher } from "../../src/crypto/rotatable-cipher.js";
import { createVaultTransitCipher } from "../../src/crypto/vault-transit-cipher.js";
import { manualClock, type ManualClock } from "../support/manual-clock.js";
import { waitUntil } from "../support/wait-until.js";
import { startVaultEmulator, type VaultEmulator } from "../support/vault-transit-emulator.js";

function configFor(vault: VaultEmulator, overrides: Partial<VaultConfig> = {}): VaultConfig {
  return {
    address: vault.url,
    token: createSecret(vault.rootToken),
    roleId: undefined,
    secretId: undefined,
    kubernetesRole: undefined,
    kubernetesTokenPath: "/var/run/secrets/kubernetes.io/serviceaccount/token",
    namespace: undefined,
    mount: vault.mount,
    key: "oauth-broker",
    createKey: true,
    timeoutMs: 2000,
    ...overrides,
  };
}

async function rejection(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(BrokerError);
    return error as BrokerError;
  }
  throw new Error("expected a rejection");
}


let vault: VaultEmulator;
let cipher: RotatableCipher;
let logs: ReturnType<typeof captureLogger>;
const opened: RotatableCipher[] = [];

async function open(config: VaultConfig, logger: Logger = logs.logger): Promise<RotatableCipher> {
  const created = await createVaultTransitCipher({ config, logger });
  opened.push(created);
  return created;
}

beforeAll(async () => {
  vault = await startVaultEmulator();
  logs = captureLogger();
  cipher = await open(configFor(vault));
});

afterEach(() => {
  vault.unseal();
  vault.setLatency(0);
});

afterAll(async () => {
  for (const each of opened) await each.close();
  await vault.close();
});

describe("round trips", () => {
  it("creates the derived key at start and round-trips a value bound to its context", async () => {
    expect(vault.key("oauth-broker")).toMatchObject({ derived: true, latestVersion: 1 });
    const plaintext = "ya29.access-token-ü-✓";
    const ciphertext = await cipher.encrypt({ plaintext, context: "integration-1" });
    expect(ciphertext).toMatch(/^vault:v1:/);
    expect(ciphertext).not.toContain(plaintext);
    expect(cipher.versionOf(ciphertext)).toBe(1);
    expect(await cipher.decrypt({ ciphertext, context: "integration-1" })).toBe(plaintext);
    expect(cipher.kind).toBe("vault-transit");
  });

  it("moves batches in chunks, in input order", async () => {
    const before = vault.requestCount("transit/encrypt/oauth-broker");
    const inputs = Array.from({ length: 600 }, (_, i) => ({ plaintext: `token-${i}`, context: `row-${i % 7}` }));
    const ciphertexts = await cipher.encryptBatch(inputs);
    expect(vault.requestCount("transit/encrypt/oauth-broker") - before).toBe(3);
    const plaintexts = await cipher.decryptBatch(ciphertexts.map((ciphertext, i) => ({ ciphertext, context: inputs[i]?.context ?? "" })));
    expect(plaintexts).toEqual(inputs.map((input) => input.plaintext));
    expect(await cipher.encryptBatch([])).toEqual([]);
  });

  it("fails closed when a ciphertext is read with another row's context", async () => {
    const a = await cipher.encrypt({ plaintext: "token-of-a", context: "row-a" });
    const b = await cipher.encrypt({ plaintext: "token-of-b", context: "row-b" });
    const error = await rejection(cipher.decrypt({ ciphertext: a, context: "row-b" }));
    expect(error.code).toBe("key_service_error");
    expect(error.reason).toBe("CIPHERTEXT_AUTHENTICATION_FAILED");
    const batchError = await rejection(
      cipher.decryptBatch([
        { ciphertext: a, context: "row-a" },
        { ciphertext: a, context: "row-b" },
        { ciphertext: b, context: "row-a" },
      ]),
    );
    expect(batchError.code).toBe("key_service_error");
    const logged = logs.log.lines.filter((line) => line["level"] === 50 && String(line["msg"]).includes("message authentication failed"));
    expect(logged.map((line) => line["msg"])).toContain("Vault refused: cipher: message authentication failed on transit/decrypt/oauth-broker");
    // The failed batch's body held the plaintext of the item that succeeded: it must not leak.
    expect(logs.log.text()).not.toContain("token-of-a");
    expect(logs.log.text()).not.toContain(Buffer.from("token-of-a").toString("base64"));
    expect(JSON.stringify({ message: batchError.message, cause: String(batchError.cause) })).not.toContain("token-of");
  });

  it("rotates, keeps old versions readable, and rewraps to the latest version", async () => {
    const old = await cipher.encrypt({ plaintext: "before-rotation", context: "row-r" });
    const version = await cipher.rotate();
    expect(version).toBe(vault.key("oauth-broker")?.latestVersion);
    expect(await cipher.latestVersion()).toBe(version);
    const fresh = await cipher.encrypt({ plaintext: "after-rotation", context: "row-r" });
    expect(cipher.versionOf(fresh)).toBe(version);
    expect(await cipher.decrypt({ ciphertext: old, context: "row-r" })).toBe("before-rotation");
    const decryptsBefore = vault.requestCount("transit/decrypt/oauth-broker");
    const [rewrapped] = await cipher.rewrapBatch([{ ciphertext: old, context: "row-r" }]);
    expect(vault.requestCount("transit/decrypt/oauth-broker")).toBe(decryptsBefore);
    expect(cipher.versionOf(rewrapped ?? "")).toBe(version);
    expect(await cipher.decrypt({ ciphertext: rewrapped ?? "", context: "row-r" })).toBe("before-rotation");
  });

  it("names a malformed ciphertext instead of guessing its version", () => {
    expect(() => cipher.versionOf("local:v1:abc")).toThrow(BrokerError);
    expect(() => cipher.versionOf("plain")).toThrow(/vault:vN:/);
  });
});

describe("unavailability", () => {
  it("answers key_service_unavailable fast while Vault is sealed, and resumes by itself", async () => {
    // A call timeout far above any loaded machine's answer: a refusal that waited for it, instead
    // of answering from Vault's 503, would exceed the bound below.
    const patient = await open(configFor(vault, { timeoutMs: 30_000 }));
    const ciphertext = await cipher.encrypt({ plaintext: "v", context: "row-s" });
    vault.seal();
    const started = Date.now();
    const error = await rejection(patient.decrypt({ ciphertext, context: "row-s" }));
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(error.code).toBe("key_service_unavailable");
    expect(error.retryAfterMs).toBeGreaterThan(0);
    expect((await rejection(cipher.check())).code).toBe("key_service_unavailable");
    vault.unseal();
    expect(await cipher.decrypt({ ciphertext, context: "row-s" })).toBe("v");
    await cipher.check();
  });

  it("maps 5xx to key_service_unavailable", async () => {
    vault.failNext(500);
    expect((await rejection(cipher.encrypt({ plaintext: "x", context: "c" }))).code).toBe("key_service_unavailable");
    vault.failNext(502);
    expect((await rejection(cipher.encryptBatch([{ plaintext: "x", context: "c" }]))).code).toBe("key_service_unavailable");
  });

  it("bounds every call with the configured timeout", async () => {
    // The emulator answers after 30 s: only the 150 ms timeout ends the call before then, however
    // late a loaded machine runs its timer.
    const quick = await open(configFor(vault, { timeoutMs: 150 }));
    vault.setLatency(30_000);
    const started = Date.now();
    const error = await rejection(quick.encrypt({ plaintext: "x", context: "c" }));
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(error.code).toBe("key_service_unavailable");
  });

  it("maps a network failure to key_service_unavailable", async () => {
    const other = await startVaultEmulator();
    const local = captureLogger();
    const doomed = await open(configFor(other, { token: createSecret(other.rootToken) }), local.logger);
    await other.close();
    const error = await rejection(doomed.encrypt({ plaintext: "x", context: "c" }));
    expect(error.code).toBe("key_service_unavailable");
    expect(local.log.text()).toContain("network error");
  });

  it("uses an injected fetch for every call", async () => {
    let calls = 0;
    const counting = await createVaultTransitCipher({
      config: configFor(vault),
      logger: logs.logger,
      fetchImpl: (input, init) => {
        calls += 1;
        return fetch(input, init);
      },
    });
    opened.push(counting);
    const before = calls;
    await counting.encrypt({ plaintext: "x", context: "c" });
    expect(calls - before).toBe(1);
  });
});

describe("refusals", () => {
  it("maps permission denied to key_service_error with an error log naming the path, without retrying", async () => {
    const token = vault.createToken({ ttlSeconds: 3600, capabilities: { read: true } });
    const local = captureLogger();
    const limited = await open(configFor(vault, { token: createSecret(token) }), local.logger);
    const before = vault.requestCount("transit/encrypt/oauth-broker");
    const error = await rejection(limited.encrypt({ plaintext: "secret-value", context: "c" }));
    expect(error.code).toBe("key_service_error");
    expect(error.reason).toBe("KEY_SERVICE_PERMISSION_DENIED");
    expect(vault.requestCount("transit/encrypt/oauth-broker") - before).toBe(1);
    const line = local.log.lines.find((entry) => entry["level"] === 50);
    expect(line?.["msg"]).toBe("Vault refused: permission denied on transit/encrypt/oauth-broker");
    expect(local.log.text()).not.toContain(token);
    expect(local.log.text()).not.toContain("secret-value");
  });

  it("says so when the static token itself is no longer accepted", async () => {
    const token = vault.createToken({ ttlSeconds: 3600 });
    const local = captureLogger();
    const doomed = await open(configFor(vault, { token: createSecret(token) }), local.logger);
    vault.revokeToken(token);
    const error = await rejection(doomed.encrypt({ plaintext: "x", context: "c" }));
    expect(error.code).toBe("key_service_error");
    expect(local.log.text()).toContain("the Vault token is invalid, expired or revoked");
  });

  it("refuses to start with a token Vault does not accept", async () => {
    const error = await rejection(createVaultTransitCipher({ config: configFor(vault, { token: createSecret("hvs.bogus") }), logger: logs.logger }));
    expect(error.code).toBe("key_service_error");
    expect(error.message).toContain("VAULT_TOKEN");
    expect(error.message).not.toContain("hvs.bogus");
  });

  it("refuses to start when the key is missing and may not be created", async () => {
    const error = await rejection(createVaultTransitCipher({ config: configFor(vault, { key: "absent-key", createKey: false }), logger: logs.logger }));
    expect(error.code).toBe("failed_precondition");
    expect(error.message).toContain('Vault transit key "absent-key" does not exist at mount "transit"');
    expect(vault.key("absent-key")).toBeUndefined();
  });

  it("refuses a key that is not derived", async () => {
    await fetch(`${vault.url}/v1/transit/keys/not-derived`, {
      method: "POST",
      headers: { "X-Vault-Token": vault.rootToken, "content-type": "application/json" },
      body: JSON.stringify({ type: "aes256-gcm96" }),
    });
    const error = await rejection(createVaultTransitCipher({ config: configFor(vault, { key: "not-derived" }), logger: logs.logger }));
    expect(error.code).toBe("failed_precondition");
    expect(error.reason).toBe("VAULT_KEY_NOT_DERIVED");
  });

  it("honours a custom mount and sends the namespace header", async () => {
    const custom = await startVaultEmulator({ mount: "kv-crypto" });
    try {
      const scoped = await open(configFor(custom, { token: createSecret(custom.rootToken), namespace: "team-a" }));
      const ciphertext = await scoped.encrypt({ plaintext: "x", context: "c" });
      expect(await scoped.decrypt({ ciphertext, context: "c" })).toBe("x");
      expect(custom.requestCount("kv-crypto/encrypt/oauth-broker")).toBe(1);
      expect(custom.requests().every((request) => request.namespace === "team-a")).toBe(true);
      await scoped.close();
    } finally {
      await custom.close();
    }
  });
});

describe("token lifetime", () => {
  /**
   * The cipher schedules its renewal on its own (real) timer at 2/3 of the TTL; whether a token is
   * still valid is judged by this emulator's clock, which moves only when the test moves it. So a
   * loaded machine can delay the renewal, but cannot make the token lapse before it: the test waits
   * for the renewal (or login) to arrive, then moves the emulator past the original TTL and checks
   * that the cipher works on the token it now holds.
   */
  const events = (logs: ReturnType<typeof captureLogger>, event: string) => logs.log.lines.filter((line) => line["event"] === event).length;

  async function withFrozenVault(test: (frozen: VaultEmulator, clock: ManualClock) => Promise<void>): Promise<void> {
    const clock = manualClock(Date.now());
    const frozen = await startVaultEmulator({ now: clock.nowMs });
    try {
      await test(frozen, clock);
    } finally {
      await frozen.close();
    }
  }

  it("renews a renewable token before it expires, with no failed call", async () => {
    await withFrozenVault(async (frozen, clock) => {
      const token = frozen.createToken({ ttlSeconds: 3, renewable: true });
      const local = captureLogger();
      const renewing = await createVaultTransitCipher({ config: configFor(frozen, { token: createSecret(token) }), logger: local.logger });
      try {
        const ciphertext = await renewing.encrypt({ plaintext: "steady", context: "row-t" });
        clock.advance(2_000);
        // Logged once the cipher holds the renewed lease, not merely once the request was sent.
        await waitUntil(() => events(local, "vault_token_renewed") >= 1, "the cipher renews its token", 25_000);
        expect(frozen.requestCount("auth/token/renew-self")).toBeGreaterThanOrEqual(1);
        // Past the original TTL (3 s): without the renewal this call would answer 403.
        clock.advance(2_000);
        expect(await renewing.decrypt({ ciphertext, context: "row-t" })).toBe("steady");
      } finally {
        await renewing.close();
      }
    });
  });

  it("logs in again with AppRole when the token nears expiry, with no failed call", async () => {
    await withFrozenVault(async (frozen, clock) => {
      frozen.addAppRole("broker-role", "broker-secret-id", 3, { renewable: false });
      const local = captureLogger();
      const approle = await createVaultTransitCipher({
        config: configFor(frozen, { token: undefined, roleId: "broker-role", secretId: createSecret("broker-secret-id") }),
        logger: local.logger,
      });
      try {
        const ciphertext = await approle.encrypt({ plaintext: "steady", context: "row-t" });
        clock.advance(2_000);
        // Logged once the cipher holds the new token, not merely once the login was sent.
        await waitUntil(() => events(local, "vault_login") >= 2, "the cipher logs in again before its token expires", 25_000);
        expect(frozen.requestCount("auth/approle/login")).toBeGreaterThanOrEqual(2);
        const logins = frozen.requestCount("auth/approle/login");
        // Past the first token's TTL: the call succeeds on the new token, with no 403 and re-login.
        clock.advance(2_000);
        expect(await approle.decrypt({ ciphertext, context: "row-t" })).toBe("steady");
        expect(frozen.requestCount("auth/approle/login")).toBe(logins);
        expect(local.log.text()).not.toContain("broker-secret-id");
      } finally {
        await approle.close();
      }
    });
  });

  it("logs in again once when a call answers 403 because the token is gone", async () => {
    vault.addAppRole("role-403", "secret-403", 3600);
    const approle = await open(configFor(vault, { token: undefined, roleId: "role-403", secretId: createSecret("secret-403") }));
    const ciphertext = await approle.encrypt({ plaintext: "still-here", context: "c" });
    const logins = vault.requestCount("auth/approle/login");
    vault.revokeIssuedTokens();
    expect(await approle.decrypt({ ciphertext, context: "c" })).toBe("still-here");
    expect(vault.requestCount("auth/approle/login") - logins).toBe(1);
  });

  it("gives up after one re-login when the new token is refused too", async () => {
    vault.addAppRole("role-denied", "secret-denied", 3600, { capabilities: { read: true } });
    const approle = await open(configFor(vault, { token: undefined, roleId: "role-denied", secretId: createSecret("secret-denied") }));
    const logins = vault.requestCount("auth/approle/login");
    const encrypts = vault.requestCount("transit/encrypt/oauth-broker");
    const error = await rejection(approle.encrypt({ plaintext: "x", context: "c" }));
    expect(error.code).toBe("key_service_error");
    expect(vault.requestCount("auth/approle/login") - logins).toBe(1);
    expect(vault.requestCount("transit/encrypt/oauth-broker") - encrypts).toBe(2);
  });

  it("logs in with the Kubernetes service-account token read from its file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "k8s-jwt-"));
    try {
      const path = join(dir, "token");
      await writeFile(path, "eyJ.k8s.jwt\n");
      vault.addKubernetesRole("oauth-broker", "eyJ.k8s.jwt", 3600);
      const k8s = await open(configFor(vault, { token: undefined, kubernetesRole: "oauth-broker", kubernetesTokenPath: path }));
      const ciphertext = await k8s.encrypt({ plaintext: "k", context: "c" });
      expect(await k8s.decrypt({ ciphertext, context: "c" })).toBe("k");
      expect(vault.requestCount("auth/kubernetes/login")).toBe(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("never writes the root token to the log", () => {
    expect(logs.log.text()).not.toContain(vault.rootToken);
  });
});
