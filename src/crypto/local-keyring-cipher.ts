/**
 * `Cipher` over a local keyring file, for the embedded default (no Vault). AES-256-GCM with a
 * per-row key: HKDF-SHA256 of the version's key with the context (the row id) as info, the same
 * construction as Vault's derived keys, so a ciphertext moved to another row fails
 * authentication. The version prefix is authenticated too (AAD), and ciphertexts read
 * `local:v<N>:base64(nonce | ciphertext | tag)`.
 *
 * The keys live next to the data they protect; that is why production refuses this cipher unless
 * explicitly allowed (see `create-cipher.ts`).
 */
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomBytes, type KeyObject } from "node:crypto";
import { stat } from "node:fs/promises";
import type { Logger } from "../observability/logger.js";
import type { CiphertextInput, CipherInput } from "../domain/ports.js";
import { BrokerError } from "../domain/errors.js";
import type { ErrorReason } from "../domain/error-reasons.js";
import { ciphertextVersion } from "./ciphertext-version.js";
import type { RotatableCipher } from "./rotatable-cipher.js";
import { addKeyVersion, keyringPath, openKeyring, readKeyring, type Keyring } from "./keyring-file.js";

export interface LocalKeyringCipherOptions {
  readonly dataDir: string;
  readonly logger: Logger;
}

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HKDF_SALT = Buffer.from("oauth-broker/local-keyring/v1", "utf8");
/** How often the file is checked for rotations made by another process. */
const RELOAD_CHECK_MS = 1000;
/**
 * Row keys derived lately. A refresh decrypts a row's two tokens and, a provider round trip
 * later, encrypts their successors: four derivations of one key, three of them saved here. The
 * keys they derive from are in memory anyway, so holding a few hundred derived ones adds nothing
 * an attacker with this process's memory lacks.
 */
const ROW_KEY_MEMO_ENTRIES = 256;

function deriveRowKey(key: Buffer, context: string): KeyObject {
  if (context === "") {
    throw new BrokerError("internal", "encryption context must not be empty (it binds a ciphertext to its row)");
  }
  return createSecretKey(Buffer.from(hkdfSync("sha256", key, HKDF_SALT, Buffer.from(context, "utf8"), 32)));
}

function refused(reason: ErrorReason, message: string): BrokerError {
  return new BrokerError("key_service_error", message, { reason, metadata: { backend: "local-keyring" } });
}

export async function createLocalKeyringCipher(options: LocalKeyringCipherOptions): Promise<RotatableCipher> {
  const { dataDir, logger } = options;
  const path = keyringPath(dataDir);
  const opened = await openKeyring(dataDir);
  let keyring: Keyring = opened.keyring;
  let lastCheck = Date.now();
  // Keyed by key version and row; a reload may bring a different keyring, so it starts afresh.
  let rowKeys = new Map<string, KeyObject>();
  let rowKeysOf = keyring;

  function rowKey(version: number, key: Buffer, context: string): KeyObject {
    if (rowKeysOf !== keyring) {
      rowKeys = new Map();
      rowKeysOf = keyring;
    }
    const memoKey = `${version}:${context}`;
    let derived = rowKeys.get(memoKey);
    if (derived === undefined) {
      derived = deriveRowKey(key, context);
      if (rowKeys.size >= ROW_KEY_MEMO_ENTRIES) rowKeys.delete(rowKeys.keys().next().value ?? "");
      rowKeys.set(memoKey, derived);
    }
    return derived;
  }

  logger.warn(
    { event: "local_keyring_in_use", path, created: opened.created, latestVersion: keyring.latest },
    "local keyring in use: keys live next to the data; use Vault in production",
  );

  /** Picks up versions added by another process (for example a rotation from the CLI). */
  async function reload(force: boolean): Promise<void> {
    if (!force && Date.now() - lastCheck < RELOAD_CHECK_MS) return;
    lastCheck = Date.now();
    try {
      const info = await stat(path);
      if (!force && info.mtimeMs === keyring.mtimeMs) return;
      const next = await readKeyring(path);
      if (next.latest >= keyring.latest) keyring = next;
    } catch (error) {
      logger.error({ event: "local_keyring_reload_failed", path, err: error }, "cannot re-read the local keyring; keeping the keys in memory");
    }
  }

  async function encryptOne(input: CipherInput): Promise<string> {
    await reload(false);
    const version = keyring.latest;
    const key = keyring.keys.get(version);
    if (!key) throw refused("KEY_VERSION_UNKNOWN", "the local keyring lost its latest key version");
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv("aes-256-gcm", rowKey(version, key, input.context), nonce);
    cipher.setAAD(Buffer.from(`local:v${version}`, "utf8"));
    const sealed = Buffer.concat([cipher.update(input.plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]);
    return `local:v${version}:${Buffer.concat([nonce, sealed]).toString("base64")}`;
  }

  async function decryptOne(input: CiphertextInput): Promise<string> {
    const version = ciphertextVersion(input.ciphertext, "local");
    let key = keyring.keys.get(version);
    if (!key) {
      await reload(true);
      key = keyring.keys.get(version);
    }
    if (!key) {
      logger.error({ event: "local_keyring_version_unknown", version, latestVersion: keyring.latest }, `ciphertext made with key version ${version}, which the local keyring does not have`);
      throw refused("KEY_VERSION_UNKNOWN", `a stored ciphertext uses key version ${version}, which the local keyring does not have`);
    }
    const body = input.ciphertext.slice(input.ciphertext.indexOf(":", "local:v".length) + 1);
    const raw = Buffer.from(body, "base64");
    if (raw.length < NONCE_BYTES + TAG_BYTES || raw.toString("base64") !== body) {
      throw refused("CIPHERTEXT_MALFORMED", "a stored ciphertext is malformed");
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", rowKey(version, key, input.context), raw.subarray(0, NONCE_BYTES));
      decipher.setAAD(Buffer.from(`local:v${version}`, "utf8"));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString("utf8");
    } catch {
      logger.error({ event: "ciphertext_authentication_failed", backend: "local-keyring", version }, "local keyring: a ciphertext failed authentication (tampered, or bound to another record)");
      throw refused("CIPHERTEXT_AUTHENTICATION_FAILED", "a stored ciphertext failed authentication (tampered, or bound to another record)");
    }
  }

  return {
    kind: "local-keyring",
    encrypt: encryptOne,
    decrypt: decryptOne,
    async encryptBatch(inputs) {
      const out: string[] = [];
      for (const input of inputs) out.push(await encryptOne(input));
      return out;
    },
    async decryptBatch(inputs) {
      const out: string[] = [];
      for (const input of inputs) out.push(await decryptOne(input));
      return out;
    },
    async rewrapBatch(inputs) {
      // All-or-nothing like the Vault batch: decrypt everything first, then encrypt.
      const plaintexts: string[] = [];
      for (const input of inputs) plaintexts.push(await decryptOne(input));
      await reload(true);
      const out: string[] = [];
      for (const [index, input] of inputs.entries()) out.push(await encryptOne({ plaintext: plaintexts[index] ?? "", context: input.context }));
      return out;
    },
    versionOf(ciphertext) {
      return ciphertextVersion(ciphertext, "local");
    },
    async latestVersion() {
      await reload(false);
      return keyring.latest;
    },
    async check() {
      try {
        await readKeyring(path);
      } catch (error) {
        if (error instanceof BrokerError) throw error;
        throw new BrokerError("key_service_unavailable", "the local keyring file cannot be read", {
          reason: "LOCAL_KEYRING_UNREADABLE",
          retryAfterMs: 5000,
          metadata: { path },
          cause: error,
        });
      }
    },
    async rotate() {
      keyring = await addKeyVersion(dataDir);
      lastCheck = Date.now();
      logger.info({ event: "key_rotated", kind: "local-keyring", path, latestVersion: keyring.latest }, "local keyring rotated");
      return keyring.latest;
    },
    async close() {},
  };
}
