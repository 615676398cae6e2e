/**
 * The local keyring cipher on a real file system: round trips, the key file's mode and atomic
 * creation, refusal of a readable file, rotation with old versions still readable (also across
 * processes sharing the file), context binding, and the choice made by `createCipher`.
 */
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config/types.js";
import { createCipher } from "../../src/crypto/create-cipher.js";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { BrokerError } from "../../src/domain/errors.js";
import { captureLogger } from "../support/log-capture.js";

async function rejection(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(BrokerError);
    return error as BrokerError;
  }
  throw new Error("expected a rejection");
}

let dataDir: string;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "broker-keyring-"));
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe("local keyring cipher", () => {
  it("round-trips values bound to their context and warns loudly at start", async () => {
    const logs = captureLogger();
    const cipher = await createLocalKeyringCipher({ dataDir, logger: logs.logger });
    expect(cipher.kind).toBe("local-keyring");
    const ciphertext = await cipher.encrypt({ plaintext: "refresh-token-✓", context: "integration-1" });
    expect(ciphertext).toMatch(/^local:v1:[A-Za-z0-9+/]+=*$/);
    expect(ciphertext).not.toContain("refresh-token");
    expect(cipher.versionOf(ciphertext)).toBe(1);
    expect(await cipher.decrypt({ ciphertext, context: "integration-1" })).toBe("refresh-token-✓");
    const batch = await cipher.encryptBatch([
      { plaintext: "a", context: "r1" },
      { plaintext: "b", context: "r2" },
    ]);
    expect(await cipher.decryptBatch(batch.map((c, i) => ({ ciphertext: c, context: `r${i + 1}` })))).toEqual(["a", "b"]);
    expect(logs.log.text()).toContain("local keyring in use: keys live next to the data; use Vault in production");
    expect(logs.log.text()).not.toContain("refresh-token");
  });

  it("creates keyring.json with mode 0600 and reuses it on the next start", async () => {
    const logger = captureLogger().logger;
    const first = await createLocalKeyringCipher({ dataDir, logger });
    const ciphertext = await first.encrypt({ plaintext: "kept", context: "c" });
    const info = await stat(join(dataDir, "keyring.json"));
    expect(info.mode & 0o777).toBe(0o600);
    const second = await createLocalKeyringCipher({ dataDir, logger });
    expect(await second.decrypt({ ciphertext, context: "c" })).toBe("kept");
  });

  it("creates a single keyring when several processes start at once", async () => {
    const logger = captureLogger().logger;
    const ciphers = await Promise.all(Array.from({ length: 5 }, () => createLocalKeyringCipher({ dataDir, logger })));
    const ciphertext = await ciphers[0]!.encrypt({ plaintext: "shared", context: "c" });
    for (const each of ciphers) expect(await each.decrypt({ ciphertext, context: "c" })).toBe("shared");
  });

  it("refuses to start when the keyring is readable by group or others", async () => {
    const logger = captureLogger().logger;
    await createLocalKeyringCipher({ dataDir, logger });
    await chmod(join(dataDir, "keyring.json"), 0o644);
    const error = await rejection(createLocalKeyringCipher({ dataDir, logger }));
    expect(error.code).toBe("key_service_error");
    expect(error.message).toContain("chmod 600");
    await chmod(join(dataDir, "keyring.json"), 0o640);
    expect((await rejection(createLocalKeyringCipher({ dataDir, logger }))).message).toContain("mode 640");
  });

  it("refuses a keyring file that is not one", async () => {
    await writeFile(join(dataDir, "keyring.json"), "{}", { mode: 0o600 });
    expect((await rejection(createLocalKeyringCipher({ dataDir, logger: captureLogger().logger }))).code).toBe("key_service_error");
  });

  it("fails closed when a ciphertext is read with another row's context or tampered with", async () => {
    const logs = captureLogger();
    const cipher = await createLocalKeyringCipher({ dataDir, logger: logs.logger });
    const a = await cipher.encrypt({ plaintext: "token-a", context: "row-a" });
    const swapped = await rejection(cipher.decrypt({ ciphertext: a, context: "row-b" }));
    expect(swapped.code).toBe("key_service_error");
    expect(swapped.reason).toBe("CIPHERTEXT_AUTHENTICATION_FAILED");
    // Both rows' keys derived lately (and kept for the next use): each still opens only its own row's ciphertexts.
    const b = await cipher.encrypt({ plaintext: "token-b", context: "row-b" });
    expect(await cipher.decryptBatch([{ ciphertext: a, context: "row-a" }, { ciphertext: b, context: "row-b" }])).toEqual(["token-a", "token-b"]);
    expect((await rejection(cipher.decrypt({ ciphertext: b, context: "row-a" }))).reason).toBe("CIPHERTEXT_AUTHENTICATION_FAILED");
    expect((await rejection(cipher.decrypt({ ciphertext: a, context: "row-b" }))).reason).toBe("CIPHERTEXT_AUTHENTICATION_FAILED");
    const raw = Buffer.from(a.slice("local:v1:".length), "base64");
    raw[14] = (raw[14] ?? 0) ^ 1;
    expect((await rejection(cipher.decrypt({ ciphertext: `local:v1:${raw.toString("base64")}`, context: "row-a" }))).reason).toBe(
      "CIPHERTEXT_AUTHENTICATION_FAILED",
    );
    expect((await rejection(cipher.decrypt({ ciphertext: "local:v1:AAAA", context: "row-a" }))).reason).toBe("CIPHERTEXT_MALFORMED");
    expect((await rejection(cipher.decrypt({ ciphertext: "vault:v1:AAAA", context: "row-a" }))).reason).toBe("CIPHERTEXT_MALFORMED");
    expect(logs.log.text()).not.toContain("token-a");
  });

  it("rotates to a new version and keeps older versions decryptable; rewrap moves to the latest", async () => {
    const cipher = await createLocalKeyringCipher({ dataDir, logger: captureLogger().logger });
    const v1 = await cipher.encrypt({ plaintext: "old", context: "c" });
    expect(await cipher.rotate()).toBe(2);
    expect(await cipher.latestVersion()).toBe(2);
    const v2 = await cipher.encrypt({ plaintext: "new", context: "c" });
    expect(v2).toMatch(/^local:v2:/);
    expect(await cipher.decrypt({ ciphertext: v1, context: "c" })).toBe("old");
    const [rewrapped] = await cipher.rewrapBatch([{ ciphertext: v1, context: "c" }]);
    expect(rewrapped).toMatch(/^local:v2:/);
    expect(await cipher.decrypt({ ciphertext: rewrapped ?? "", context: "c" })).toBe("old");
    const file = JSON.parse(await readFile(join(dataDir, "keyring.json"), "utf8")) as { keys: Array<{ version: number }> };
    expect(file.keys.map((key) => key.version)).toEqual([1, 2]);
    expect((await stat(join(dataDir, "keyring.json"))).mode & 0o777).toBe(0o600);
  });

  it("reads a version rotated in by another process sharing the file", async () => {
    const logger = captureLogger().logger;
    const broker = await createLocalKeyringCipher({ dataDir, logger });
    const admin = await createLocalKeyringCipher({ dataDir, logger });
    await admin.rotate();
    const fromAdmin = await admin.encrypt({ plaintext: "rotated-elsewhere", context: "c" });
    expect(await broker.decrypt({ ciphertext: fromAdmin, context: "c" })).toBe("rotated-elsewhere");
    expect(await broker.latestVersion()).toBe(2);
  });
});

describe("createCipher", () => {
  function config(overrides: Partial<Config>): Config {
    return { nodeEnv: "development", dataDir, vault: undefined, allowLocalKeyringInProduction: false, ...overrides } as Config;
  }

  it("uses the local keyring without Vault", async () => {
    const cipher = await createCipher(config({}), captureLogger().logger);
    expect(cipher.kind).toBe("local-keyring");
  });

  it("refuses the local keyring in production unless explicitly allowed", async () => {
    const error = await rejection(createCipher(config({ nodeEnv: "production" }), captureLogger().logger));
    expect(error.code).toBe("failed_precondition");
    const allowed = await createCipher(config({ nodeEnv: "production", allowLocalKeyringInProduction: true }), captureLogger().logger);
    expect(allowed.kind).toBe("local-keyring");
  });
});
