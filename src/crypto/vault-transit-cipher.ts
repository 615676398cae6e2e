/**
 * `Cipher` over Vault's transit engine. Every value is encrypted with a derived `aes256-gcm96`
 * key and its row id as the derivation context, so a ciphertext copied into another row fails
 * authentication instead of decrypting to someone else's token. Re-wrapping happens inside Vault
 * (`rewrap`): the broker never sees the plaintext of what it re-wraps.
 *
 * Calls use node-vault's generic `read`/`write` with the configured mount (its transit helpers
 * hard-code `transit/`). Failures become `BrokerError`s here: unavailable (sealed, 5xx, network,
 * timeout) → `key_service_unavailable` with a retry hint; refused (permission, failed
 * authentication, bad ciphertext) → `key_service_error` with an error log naming the cause. Nothing
 * is retried except one call after a re-login, when a 403 may mean the token expired.
 */
import type { Logger } from "../observability/logger.js";
import { outboundRequestId, REQUEST_ID_HEADER } from "../observability/request-context.js";
import type { VaultConfig } from "../config/types.js";
import type { CipherInput, CiphertextInput } from "../domain/ports.js";
import { BrokerError } from "../domain/errors.js";
import { ciphertextVersion } from "./ciphertext-version.js";
import type { RotatableCipher } from "./rotatable-cipher.js";
import { createVaultAuth } from "./vault-auth.js";
import { classifyVaultError, vaultBrokerError, type VaultFailure } from "./vault-errors.js";
import { createVaultHttpClient, tokenHeaders, type FetchLike, type VaultRequestOptions } from "./vault-http-client.js";

export interface VaultTransitCipherOptions {
  readonly config: VaultConfig;
  readonly logger: Logger;
  readonly fetchImpl?: FetchLike | undefined;
  /** Items per Vault batch call. */
  readonly batchSize?: number | undefined;
  /** How long `latestVersion()` may answer from memory. */
  readonly keyInfoCacheMs?: number | undefined;
}

/** The fields of `GET <mount>/keys/<name>` the broker relies on. */
interface TransitKeyInfo {
  readonly type: string;
  readonly derived: boolean;
  readonly convergent: boolean;
  readonly latestVersion: number;
}

const DEFAULT_BATCH_SIZE = 250;

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
}

const toBase64 = (text: string): string => Buffer.from(text, "utf8").toString("base64");
const fromBase64 = (text: string): string => Buffer.from(text, "base64").toString("utf8");

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function requireContext(context: string): string {
  if (context === "") {
    throw new BrokerError("internal", "encryption context must not be empty (it binds a ciphertext to its row)");
  }
  return toBase64(context);
}

export async function createVaultTransitCipher(options: VaultTransitCipherOptions): Promise<RotatableCipher> {
  const { config, logger } = options;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const cacheMs = options.keyInfoCacheMs ?? 5000;
  const mount = config.mount.replace(/^\/+|\/+$/g, "");
  const keyPath = `${mount}/keys/${config.key}`;
  const paths = {
    encrypt: `${mount}/encrypt/${config.key}`,
    decrypt: `${mount}/decrypt/${config.key}`,
    rewrap: `${mount}/rewrap/${config.key}`,
    rotate: `${keyPath}/rotate`,
  };
  const client = createVaultHttpClient({
    address: config.address,
    namespace: config.namespace,
    timeoutMs: config.timeoutMs,
    fetchImpl: options.fetchImpl,
  });
  const auth = createVaultAuth({ client, config, logger });
  let cachedLatest: { version: number; at: number } | undefined;

  function fail(failure: VaultFailure, path: string, note?: string): BrokerError {
    const error = vaultBrokerError(failure, path);
    const fields = { event: "vault_call_failed", path, status: failure.status, vaultError: failure.detail, reason: error.reason };
    if (failure.kind === "unavailable") {
      logger.warn(fields, `Vault unavailable: ${failure.detail} on ${path}`);
    } else {
      logger.error(fields, `Vault refused: ${note ?? failure.detail} on ${path}`);
    }
    return error;
  }

  /**
   * One Vault call with the current token; after a 403, one re-login and one retry when the auth
   * method can log in. `notFound: "undefined"` turns a 404 into `undefined` (key lookups).
   */
  async function call(path: string, send: (options: VaultRequestOptions) => Promise<unknown>, notFound?: "undefined"): Promise<unknown> {
    let token = await auth.currentToken();
    let retried = false;
    for (;;) {
      try {
        // Vault's audit device records request headers it is told to: the id ties its entry to ours.
        const options = tokenHeaders(token);
        return await send({ headers: { ...options.headers, [REQUEST_ID_HEADER]: outboundRequestId() } });
      } catch (error) {
        const failure = classifyVaultError(error);
        if (failure.kind === "not_found" && notFound === "undefined") return undefined;
        if (failure.kind === "forbidden" && !retried && (await auth.recover(token))) {
          retried = true;
          token = await auth.currentToken();
          continue;
        }
        if (failure.kind === "forbidden" && auth.method === "token") {
          const accepted = await auth.tokenAccepted();
          if (accepted === false) throw fail(failure, path, "the Vault token is invalid, expired or revoked");
        }
        throw fail(failure, path);
      }
    }
  }

  function malformed(path: string, what: string): BrokerError {
    logger.error({ event: "vault_bad_response", path }, `Vault answered without ${what} on ${path}`);
    return new BrokerError("key_service_error", "the key service (Vault) answered something the broker cannot use", {
      reason: "KEY_SERVICE_BAD_RESPONSE",
      metadata: { backend: "vault-transit", path },
    });
  }

  function dataOf(response: unknown): Record<string, unknown> {
    return record(record(response)?.["data"]) ?? {};
  }

  async function readKey(): Promise<TransitKeyInfo | undefined> {
    const response = await call(keyPath, (o) => client.read(keyPath, o), "undefined");
    if (response === undefined) return undefined;
    const data = dataOf(response);
    const latest = data["latest_version"];
    if (typeof latest !== "number") throw malformed(keyPath, "latest_version");
    cachedLatest = { version: latest, at: Date.now() };
    return {
      type: String(data["type"]),
      derived: data["derived"] === true,
      convergent: data["convergent_encryption"] === true,
      latestVersion: latest,
    };
  }

  async function requireKey(): Promise<TransitKeyInfo> {
    const info = await readKey();
    if (!info) {
      logger.error({ event: "vault_key_missing", path: keyPath }, `Vault transit key missing: ${keyPath}`);
      throw new BrokerError("key_service_error", `the Vault transit key ${keyPath} does not exist (deleted?)`, {
        reason: "KEY_NOT_FOUND",
        metadata: { backend: "vault-transit", path: keyPath },
      });
    }
    return info;
  }

  /** Batch call: `batch_input` → `data.batch_results[field]`, in input order, chunked. */
  async function batch(path: string, items: ReadonlyArray<Record<string, string>>, field: "ciphertext" | "plaintext"): Promise<string[]> {
    const out: string[] = [];
    for (const chunk of chunks(items, batchSize)) {
      const response = await call(path, (o) => client.write(path, { batch_input: chunk }, o));
      const results = dataOf(response)["batch_results"];
      if (!Array.isArray(results) || results.length !== chunk.length) throw malformed(path, "batch_results");
      for (const result of results) {
        const item = record(result);
        const error = item?.["error"];
        if (typeof error === "string" && error !== "") throw fail({ kind: "refused", status: 200, detail: error }, path);
        const value = item?.[field];
        if (typeof value !== "string") throw malformed(path, field);
        out.push(value);
      }
    }
    return out;
  }

  async function single(path: string, body: Record<string, string>, field: "ciphertext" | "plaintext"): Promise<string> {
    const response = await call(path, (o) => client.write(path, body, o));
    const value = dataOf(response)[field];
    if (typeof value !== "string") throw malformed(path, field);
    return value;
  }

  try {
    await auth.start();
    let info = await readKey();
    if (!info) {
      if (!config.createKey) {
        throw new BrokerError(
          "failed_precondition",
          `Vault transit key "${config.key}" does not exist at mount "${mount}": create it with ` +
            `\`vault write ${keyPath} type=aes256-gcm96 derived=true\` or allow the broker to create it`,
          { reason: "VAULT_KEY_MISSING", metadata: { backend: "vault-transit", path: keyPath } },
        );
      }
      await call(keyPath, (o) => client.write(keyPath, { type: "aes256-gcm96", derived: true }, o));
      info = await requireKey();
      logger.info({ event: "vault_key_created", path: keyPath }, `created the derived aes256-gcm96 transit key ${keyPath}`);
    }
    if (info.type !== "aes256-gcm96" || !info.derived || info.convergent) {
      throw new BrokerError(
        "failed_precondition",
        `Vault transit key ${keyPath} must be a derived, non-convergent aes256-gcm96 key (found type=${info.type}, ` +
          `derived=${info.derived}, convergent=${info.convergent}): without derivation a ciphertext is not bound to its row`,
        { reason: "VAULT_KEY_NOT_DERIVED", metadata: { backend: "vault-transit", path: keyPath } },
      );
    }
    logger.info({ event: "cipher_ready", kind: "vault-transit", path: keyPath, latestVersion: info.latestVersion, auth: auth.method }, "Vault transit cipher ready");
  } catch (error) {
    auth.close();
    throw error;
  }

  return {
    kind: "vault-transit",
    async encrypt(input: CipherInput) {
      return single(paths.encrypt, { plaintext: toBase64(input.plaintext), context: requireContext(input.context) }, "ciphertext");
    },
    async decrypt(input: CiphertextInput) {
      const plaintext = await single(paths.decrypt, { ciphertext: input.ciphertext, context: requireContext(input.context) }, "plaintext");
      return fromBase64(plaintext);
    },
    async encryptBatch(inputs) {
      if (inputs.length === 0) return [];
      const items = inputs.map((input) => ({ plaintext: toBase64(input.plaintext), context: requireContext(input.context) }));
      return batch(paths.encrypt, items, "ciphertext");
    },
    async decryptBatch(inputs) {
      if (inputs.length === 0) return [];
      const items = inputs.map((input) => ({ ciphertext: input.ciphertext, context: requireContext(input.context) }));
      return (await batch(paths.decrypt, items, "plaintext")).map(fromBase64);
    },
    async rewrapBatch(inputs) {
      if (inputs.length === 0) return [];
      const items = inputs.map((input) => ({ ciphertext: input.ciphertext, context: requireContext(input.context) }));
      return batch(paths.rewrap, items, "ciphertext");
    },
    versionOf(ciphertext) {
      return ciphertextVersion(ciphertext, "vault");
    },
    async latestVersion() {
      if (cachedLatest && Date.now() - cachedLatest.at < cacheMs) return cachedLatest.version;
      return (await requireKey()).latestVersion;
    },
    async check() {
      await requireKey();
    },
    async rotate() {
      const response = await call(paths.rotate, (o) => client.write(paths.rotate, {}, o));
      // Vault >= 1.12 answers 200 with the key; older versions 204 without a body.
      const latest = dataOf(response)["latest_version"];
      const version = typeof latest === "number" ? latest : (await requireKey()).latestVersion;
      cachedLatest = { version, at: Date.now() };
      logger.info({ event: "key_rotated", kind: "vault-transit", path: keyPath, latestVersion: version }, "Vault transit key rotated");
      return version;
    },
    async close() {
      auth.close();
    },
  };
}
