/**
 * A Vault look-alike for tests: a real HTTP server on 127.0.0.1 speaking the parts of Vault's HTTP
 * API the broker uses (transit encrypt/decrypt/rewrap/keys/rotate/config, token lookup-self and
 * renew-self, AppRole and Kubernetes login), with Vault's envelope, status codes and error strings
 * as read from `builtin/logical/transit`, `sdk/helper/keysutil/policy.go` and `vault/request_handling.go`.
 *
 * Test double only: nothing under `src/` may import it.
 *
 * Access control is modelled per token instead of per path (Vault's ACL), with four flags:
 * - `create`: create a key (`POST <mount>/keys/:name` on a missing key, encrypt "upsert");
 * - `update`: encrypt/decrypt/rewrap with an existing key;
 * - `read`:   `GET <mount>/keys/:name`;
 * - `rotate`: `POST <mount>/keys/:name/rotate` and `POST <mount>/keys/:name/config`.
 * As in Vault, encrypting with a missing key is a *create* operation (the encrypt path has an
 * existence check), so a token without `create` gets 403, not an upsert.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface TransitCapabilities {
  readonly create?: boolean;
  readonly update?: boolean;
  readonly read?: boolean;
  readonly rotate?: boolean;
}

export interface CreateTokenOptions {
  /** 0 or absent: the token never expires (like a root token). */
  readonly ttlSeconds?: number;
  readonly renewable?: boolean;
  /**
   * Names reported by lookup-self. Capabilities come from the names registered with
   * `definePolicy` (their union); `root`, or no registered name at all, grants every capability.
   */
  readonly policies?: readonly string[];
  /** Transit capabilities, overriding what `policies` grant. */
  readonly capabilities?: TransitCapabilities;
  /** Renewals never extend the token past creation + this (Vault's explicit_max_ttl). */
  readonly explicitMaxTtlSeconds?: number;
}

export interface AppRoleOptions {
  readonly renewable?: boolean;
  readonly capabilities?: TransitCapabilities;
  readonly tokenMaxTtlSeconds?: number;
}

export interface EmulatorRequest {
  readonly method: string;
  /** Path without the `/v1/` prefix and without the query, e.g. `transit/encrypt/oauth-broker`. */
  readonly path: string;
  readonly status: number;
  readonly namespace: string | undefined;
  readonly tokenPresent: boolean;
  /** The `X-Request-Id` header the client sent, if any. */
  readonly requestId: string | undefined;
}

export interface KeySnapshot {
  readonly name: string;
  readonly derived: boolean;
  readonly latestVersion: number;
  readonly minDecryptionVersion: number;
  readonly minEncryptionVersion: number;
}

export interface VaultEmulator {
  readonly url: string;
  readonly rootToken: string;
  readonly mount: string;
  close(): Promise<void>;
  /** Every path but `sys/health` answers 503 `Vault is sealed` until `unseal()`. */
  seal(): void;
  unseal(): void;
  /** Registers a named policy for `createToken({ policies })`. */
  definePolicy(name: string, capabilities: TransitCapabilities): void;
  /** Replaces the transit capabilities of an existing token. */
  setPolicy(token: string, capabilities: TransitCapabilities): void;
  createToken(options?: CreateTokenOptions): string;
  revokeToken(token: string): void;
  /** Revokes every token but the root token (as if they had all expired). */
  revokeIssuedTokens(): void;
  addAppRole(roleId: string, secretId: string, tokenTtlSeconds: number, options?: AppRoleOptions): void;
  addKubernetesRole(role: string, jwt: string, tokenTtlSeconds: number, options?: AppRoleOptions): void;
  /** Requests received on `path` (with or without `/v1/`), or all requests. */
  requestCount(path?: string): number;
  requests(): readonly EmulatorRequest[];
  /** The next `count` requests (after sealing and routing checks are skipped) answer `status`. */
  failNext(status: number, count?: number): void;
  /** Delay before answering every request, to exercise client timeouts. */
  setLatency(ms: number): void;
  key(name: string): KeySnapshot | undefined;
  /** Makes the key unknown (as if deleted) until the returned function puts it back. */
  hideKey(name: string): () => void;
}

export interface VaultEmulatorOptions {
  readonly token?: string;
  readonly mount?: string;
  /** Clock in milliseconds, for token TTLs. */
  readonly now?: () => number;
}

const PERMISSION_DENIED = "1 error occurred:\n\t* permission denied\n\n";
const MISSING_CONTEXT =
  "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";
const ERR_TOO_OLD = "ciphertext or signature version is disallowed by policy (too old)";
const ALL_CAPABILITIES: Required<TransitCapabilities> = { create: true, update: true, read: true, rotate: true };
const NO_CAPABILITIES: Required<TransitCapabilities> = { create: false, update: false, read: false, rotate: false };

interface KeyVersion {
  readonly material: Buffer;
  readonly createdAt: number;
}

interface TransitKey {
  readonly name: string;
  readonly derived: boolean;
  readonly convergent: boolean;
  readonly exportable: boolean;
  readonly versions: Map<number, KeyVersion>;
  latestVersion: number;
  minDecryptionVersion: number;
  minEncryptionVersion: number;
  deletionAllowed: boolean;
}

interface TokenEntry {
  readonly id: string;
  readonly accessor: string;
  readonly policies: readonly string[];
  capabilities: Required<TransitCapabilities>;
  readonly creationTtlSeconds: number;
  readonly issuedAt: number;
  /** ms since epoch; null: never expires. */
  expiresAt: number | null;
  readonly renewable: boolean;
  readonly explicitMaxTtlSeconds: number;
  readonly path: string;
  readonly meta: Record<string, string> | null;
}

interface LoginRole {
  readonly secret: string;
  readonly ttlSeconds: number;
  readonly options: AppRoleOptions;
}

/** A failure answered with Vault's error envelope. */
class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: readonly string[],
  ) {
    super(errors[0] ?? `status ${status}`);
  }
}

const invalidRequest = (message: string) => new VaultHttpError(400, [message]);
const permissionDenied = () => new VaultHttpError(403, [PERMISSION_DENIED]);

/** Strict standard base64 as Go's `base64.StdEncoding.DecodeString` accepts it. */
function decodeBase64(value: string): Buffer {
  const bad = value.search(/[^A-Za-z0-9+/=]/);
  if (bad >= 0) throw new Error(`illegal base64 data at input byte ${bad}`);
  if (value.length % 4 !== 0 || /=[^=]/.test(value) || /={3,}$/.test(value)) {
    throw new Error(`illegal base64 data at input byte ${Math.max(0, value.length - (value.length % 4 || 4))}`);
  }
  return Buffer.from(value, "base64");
}

function asString(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function asInt(value: unknown): number {
  if (typeof value === "number" && Number.isInteger(value)) return value;
  if (typeof value === "string" && /^-?\d+$/.test(value)) return Number(value);
  return 0;
}

interface BatchItem {
  readonly plaintext?: string | undefined;
  readonly ciphertext: string;
  readonly context: string;
  readonly keyVersion: number;
  readonly reference: string;
}

function readItems(body: Record<string, unknown>, kind: "encrypt" | "decrypt" | "rewrap"): { items: BatchItem[]; batch: boolean } {
  const raw = body["batch_input"];
  if (raw !== undefined && raw !== null) {
    if (!Array.isArray(raw)) throw new VaultHttpError(500, ["1 error occurred:\n\t* failed to parse batch input\n\n"]);
    if (raw.length === 0) throw invalidRequest("missing batch input to process");
    const items = raw.map((entry: unknown, index): BatchItem => {
      if (typeof entry !== "object" || entry === null) {
        throw new VaultHttpError(500, [`1 error occurred:\n\t* failed to parse batch input: [${index}] expected a map\n\n`]);
      }
      const item = entry as Record<string, unknown>;
      if (kind === "encrypt" && typeof item["plaintext"] !== "string") {
        throw new VaultHttpError(500, [
          `1 error occurred:\n\t* failed to parse batch input: '[${index}].plaintext' missing plaintext to encrypt\n\n`,
        ]);
      }
      return {
        plaintext: typeof item["plaintext"] === "string" ? item["plaintext"] : undefined,
        ciphertext: asString(item["ciphertext"]),
        context: asString(item["context"]),
        keyVersion: asInt(item["key_version"]),
        reference: asString(item["reference"]),
      };
    });
    return { items, batch: true };
  }
  if (kind === "encrypt") {
    if (typeof body["plaintext"] !== "string") throw invalidRequest("missing plaintext to encrypt");
  } else if (asString(body["ciphertext"]) === "") {
    throw invalidRequest("missing ciphertext to decrypt");
  }
  return {
    items: [
      {
        plaintext: typeof body["plaintext"] === "string" ? body["plaintext"] : undefined,
        ciphertext: asString(body["ciphertext"]),
        context: asString(body["context"]),
        keyVersion: asInt(body["key_version"]),
        reference: "",
      },
    ],
    batch: false,
  };
}

function checkContextAllOrNone(items: readonly BatchItem[]): void {
  const contextSet = (items[0]?.context ?? "") !== "";
  if (items.some((item) => (item.context !== "") !== contextSet)) {
    throw invalidRequest("context should be set either in all the request blocks or in none");
  }
}

/** keysutil `DeriveKey` with the HKDF-SHA256 KDF: the context is the HKDF info, no salt. */
function encryptionKey(key: TransitKey, version: number, context: Buffer): Buffer {
  const entry = key.versions.get(version);
  if (!entry) throw new VaultHttpError(500, ["1 error occurred:\n\t* key version not found\n\n"]);
  if (!key.derived) return entry.material;
  if (context.length === 0) throw new Error(MISSING_CONTEXT);
  return Buffer.from(hkdfSync("sha256", entry.material, Buffer.alloc(0), context, 32));
}

/** keysutil `Policy.Encrypt` for aes256-gcm96; throws a user error message. */
function transitEncrypt(key: TransitKey, requested: number, context: Buffer, plaintextB64: string): { ciphertext: string; version: number } {
  const plaintext = decodeBase64(plaintextB64);
  let version = requested;
  if (version === 0) version = key.latestVersion;
  else if (version < 0) throw new Error("requested version for encryption is negative");
  else if (version > key.latestVersion) throw new Error("requested version for encryption is higher than the latest key version");
  else if (version < key.minEncryptionVersion) {
    throw new Error("requested version for encryption is less than the minimum encryption key version");
  }
  const aesKey = encryptionKey(key, version, context);
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", aesKey, nonce);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { ciphertext: `vault:v${version}:${Buffer.concat([nonce, body]).toString("base64")}`, version };
}

/** keysutil `Policy.Decrypt`, checks in Vault's order; returns base64 plaintext. */
function transitDecrypt(key: TransitKey, context: Buffer, value: string): string {
  if (!value.startsWith("vault:v")) throw new Error("invalid ciphertext: no prefix");
  const rest = value.slice("vault:v".length);
  const colon = rest.indexOf(":");
  if (colon < 0) throw new Error("invalid ciphertext: wrong number of fields");
  const versionText = rest.slice(0, colon);
  if (!/^[+-]?\d+$/.test(versionText)) throw new Error("invalid ciphertext: version number could not be decoded");
  let version = Number(versionText);
  if (version === 0) version = 1;
  if (version > key.latestVersion) throw new Error("invalid ciphertext: version is too new");
  if (key.minDecryptionVersion > 0 && version < key.minDecryptionVersion) throw new Error(ERR_TOO_OLD);
  let decoded: Buffer;
  try {
    decoded = decodeBase64(rest.slice(colon + 1));
  } catch {
    throw new Error("invalid ciphertext: could not decode base64");
  }
  const aesKey = encryptionKey(key, version, context);
  if (decoded.length < 12) throw new Error("invalid ciphertext length");
  const nonce = decoded.subarray(0, 12);
  const sealed = decoded.subarray(12);
  if (sealed.length < 16) throw new Error("cipher: message authentication failed");
  try {
    const decipher = createDecipheriv("aes-256-gcm", aesKey, nonce);
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const plain = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]);
    return plain.toString("base64");
  } catch {
    throw new Error("cipher: message authentication failed");
  }
}

export async function startVaultEmulator(options: VaultEmulatorOptions = {}): Promise<VaultEmulator> {
  const mount = (options.mount ?? "transit").replace(/^\/+|\/+$/g, "");
  const now = options.now ?? (() => Date.now());
  const rootToken = options.token ?? `hvs.${randomBytes(18).toString("base64url")}`;
  const keys = new Map<string, TransitKey>();
  const tokens = new Map<string, TokenEntry>();
  const appRoles = new Map<string, LoginRole>();
  const kubernetesRoles = new Map<string, LoginRole>();
  const namedPolicies = new Map<string, TransitCapabilities>();
  const log: EmulatorRequest[] = [];
  let sealed = false;
  let latencyMs = 0;
  let faults: { status: number; remaining: number } | null = null;

  function issueToken(opts: CreateTokenOptions & { path?: string; meta?: Record<string, string> | null }): TokenEntry {
    const ttl = opts.ttlSeconds ?? 0;
    const policies = opts.policies ?? (ttl === 0 ? ["root"] : ["default"]);
    const defined = policies.flatMap((name) => {
      const found = namedPolicies.get(name);
      return found ? [found] : [];
    });
    const capabilities = opts.capabilities
      ? { ...NO_CAPABILITIES, ...opts.capabilities }
      : policies.includes("root") || defined.length === 0
        ? { ...ALL_CAPABILITIES }
        : {
            create: defined.some((p) => p.create === true),
            update: defined.some((p) => p.update === true),
            read: defined.some((p) => p.read === true),
            rotate: defined.some((p) => p.rotate === true),
          };
    const entry: TokenEntry = {
      id: `hvs.${randomBytes(18).toString("base64url")}`,
      accessor: randomBytes(12).toString("base64url"),
      policies,
      capabilities,
      creationTtlSeconds: ttl,
      issuedAt: now(),
      expiresAt: ttl > 0 ? now() + ttl * 1000 : null,
      renewable: opts.renewable ?? ttl > 0,
      explicitMaxTtlSeconds: opts.explicitMaxTtlSeconds ?? 0,
      path: opts.path ?? "auth/token/create",
      meta: opts.meta ?? null,
    };
    tokens.set(entry.id, entry);
    return entry;
  }

  tokens.set(rootToken, {
    id: rootToken,
    accessor: randomBytes(12).toString("base64url"),
    policies: ["root"],
    capabilities: { ...ALL_CAPABILITIES },
    creationTtlSeconds: 0,
    issuedAt: now(),
    expiresAt: null,
    renewable: false,
    explicitMaxTtlSeconds: 0,
    path: "auth/token/root",
    meta: null,
  });

  function liveToken(id: string | undefined): TokenEntry | undefined {
    if (!id) return undefined;
    const entry = tokens.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt !== null && entry.expiresAt <= now()) {
      tokens.delete(id);
      return undefined;
    }
    return entry;
  }

  function remainingTtl(entry: TokenEntry): number {
    return entry.expiresAt === null ? 0 : Math.max(0, Math.round((entry.expiresAt - now()) / 1000));
  }

  function authBlock(entry: TokenEntry): Record<string, unknown> {
    return {
      client_token: entry.id,
      accessor: entry.accessor,
      policies: entry.policies,
      token_policies: entry.policies,
      metadata: entry.meta,
      lease_duration: remainingTtl(entry),
      renewable: entry.renewable,
      entity_id: "",
      token_type: "service",
      orphan: true,
      mfa_requirement: null,
      num_uses: 0,
    };
  }

  function keyInfo(key: TransitKey): Record<string, unknown> {
    const versions: Record<string, number> = {};
    for (const [version, entry] of key.versions) versions[String(version)] = Math.floor(entry.createdAt / 1000);
    return {
      allow_plaintext_backup: false,
      auto_rotate_period: 0,
      deletion_allowed: key.deletionAllowed,
      derived: key.derived,
      exportable: key.exportable,
      imported_key: false,
      keys: versions,
      latest_version: key.latestVersion,
      min_available_version: 0,
      min_decryption_version: key.minDecryptionVersion,
      min_encryption_version: key.minEncryptionVersion,
      name: key.name,
      supports_decryption: true,
      supports_derivation: true,
      supports_encryption: true,
      supports_signing: false,
      type: "aes256-gcm96",
      ...(key.derived ? { kdf: "hkdf_sha256", convergent_encryption: key.convergent } : {}),
    };
  }

  function createKey(name: string, derived: boolean, convergent: boolean, exportable: boolean): TransitKey {
    const key: TransitKey = {
      name,
      derived,
      convergent,
      exportable,
      versions: new Map([[1, { material: randomBytes(32), createdAt: now() }]]),
      latestVersion: 1,
      minDecryptionVersion: 1,
      minEncryptionVersion: 0,
      deletionAllowed: false,
    };
    keys.set(name, key);
    return key;
  }

  function demand(entry: TokenEntry, capability: keyof TransitCapabilities): void {
    if (!entry.capabilities[capability]) throw permissionDenied();
  }

  function envelope(data: unknown, extra: { warnings?: string[]; auth?: unknown } = {}): Record<string, unknown> {
    return {
      request_id: randomUUID(),
      lease_id: "",
      renewable: false,
      lease_duration: 0,
      data,
      wrap_info: null,
      warnings: extra.warnings && extra.warnings.length > 0 ? extra.warnings : null,
      auth: extra.auth ?? null,
    };
  }

  type Result = { status: number; body: unknown };
  const ok = (data: unknown, extra?: { warnings?: string[]; auth?: unknown }): Result => ({ status: 200, body: envelope(data, extra) });

  /** Answers a batch as Vault's `batchRequestResponse` does: 400 with the results on any item error. */
  function batchResult(body: Record<string, unknown>, results: Array<Record<string, unknown>>): Result {
    const failures = results.filter((item) => typeof item["error"] === "string" && item["error"] !== "").length;
    let status = 200;
    if (failures > 0) {
      status = 400;
      const override = asInt(body["partial_failure_response_code"]);
      if (override >= 1 && override <= 599 && failures < results.length) status = override;
    }
    return { status, body: envelope({ batch_results: results }) };
  }

  function decodeContext(item: BatchItem): Buffer {
    return item.context === "" ? Buffer.alloc(0) : decodeBase64(item.context);
  }

  function handleEncrypt(name: string, body: Record<string, unknown>, entry: TokenEntry): Result {
    let key = keys.get(name);
    // Vault's encrypt path has an existence check: a missing key makes this a create operation.
    demand(entry, key ? "update" : "create");
    const { items, batch } = readItems(body, "encrypt");
    checkContextAllOrNone(items);
    const errors: Array<string | undefined> = items.map((item) => {
      try {
        decodeBase64(item.plaintext ?? "");
        decodeContext(item);
        return undefined;
      } catch (error) {
        return (error as Error).message;
      }
    });
    if (!key) {
      const convergent = body["convergent_encryption"] === true;
      const contextSet = (items[0]?.context ?? "") !== "";
      if (convergent && !contextSet) throw invalidRequest("convergent encryption requires derivation to be enabled, so context is required");
      const type = asString(body["type"]) || "aes256-gcm96";
      if (type !== "aes256-gcm96") throw invalidRequest(`unknown key type ${type}`);
      key = createKey(name, contextSet, convergent, false);
    }
    const results = items.map((item, index): Record<string, unknown> => {
      const early = errors[index];
      if (early !== undefined) return { error: early, reference: item.reference };
      try {
        const out = transitEncrypt(key, item.keyVersion, decodeContext(item), item.plaintext ?? "");
        return { ciphertext: out.ciphertext, key_version: out.version, reference: item.reference };
      } catch (error) {
        if (error instanceof VaultHttpError) throw error;
        return { error: (error as Error).message, reference: item.reference };
      }
    });
    if (batch) return batchResult(body, results);
    const single = results[0] ?? {};
    if (typeof single["error"] === "string") throw invalidRequest(single["error"]);
    return ok({ ciphertext: single["ciphertext"], key_version: single["key_version"] }, {});
  }

  function handleDecrypt(name: string, body: Record<string, unknown>, entry: TokenEntry): Result {
    demand(entry, "update");
    const { items, batch } = readItems(body, "decrypt");
    checkContextAllOrNone(items);
    const errors = items.map((item): string | undefined => {
      if (item.ciphertext === "") return "missing ciphertext to decrypt";
      try {
        decodeContext(item);
        return undefined;
      } catch (error) {
        return (error as Error).message;
      }
    });
    const key = keys.get(name);
    if (!key) throw invalidRequest("encryption key not found");
    const results = items.map((item, index): Record<string, unknown> => {
      const early = errors[index];
      if (early !== undefined) return { plaintext: "", error: early, reference: item.reference };
      try {
        return { plaintext: transitDecrypt(key, decodeContext(item), item.ciphertext), reference: item.reference };
      } catch (error) {
        if (error instanceof VaultHttpError) throw error;
        return { plaintext: "", error: (error as Error).message, reference: item.reference };
      }
    });
    if (batch) return batchResult(body, results);
    const single = results[0] ?? {};
    if (typeof single["error"] === "string") throw invalidRequest(single["error"]);
    return ok({ plaintext: single["plaintext"] });
  }

  function handleRewrap(name: string, body: Record<string, unknown>, entry: TokenEntry): Result {
    demand(entry, "update");
    const { items, batch } = readItems(body, "rewrap");
    checkContextAllOrNone(items);
    const key = keys.get(name);
    if (!key) throw invalidRequest("encryption key not found");
    const results = items.map((item): Record<string, unknown> => {
      try {
        if (item.ciphertext === "") throw new Error("missing ciphertext to decrypt");
        const context = decodeContext(item);
        const plaintext = transitDecrypt(key, context, item.ciphertext);
        const out = transitEncrypt(key, item.keyVersion, context, plaintext);
        return { ciphertext: out.ciphertext, key_version: out.version, reference: item.reference };
      } catch (error) {
        if (error instanceof VaultHttpError) throw error;
        return { error: (error as Error).message, reference: item.reference };
      }
    });
    if (batch) return batchResult(body, results);
    const single = results[0] ?? {};
    if (typeof single["error"] === "string") throw invalidRequest(single["error"]);
    return ok({ ciphertext: single["ciphertext"], key_version: single["key_version"] });
  }

  function handleKeyConfig(key: TransitKey, body: Record<string, unknown>): Result {
    const warnings: string[] = [];
    let minDecryption = key.minDecryptionVersion;
    let minEncryption = key.minEncryptionVersion;
    if (body["min_decryption_version"] !== undefined) {
      minDecryption = asInt(body["min_decryption_version"]);
      if (minDecryption < 0) throw invalidRequest("min decryption version cannot be negative");
      if (minDecryption === 0) {
        minDecryption = 1;
        warnings.push("since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1");
      }
      if (minDecryption !== key.minDecryptionVersion && minDecryption > key.latestVersion) {
        throw invalidRequest(`cannot set min decryption version of ${minDecryption}, latest key version is ${key.latestVersion}`);
      }
    }
    if (body["min_encryption_version"] !== undefined) {
      minEncryption = asInt(body["min_encryption_version"]);
      if (minEncryption < 0) throw invalidRequest("min encryption version cannot be negative");
      if (minEncryption !== key.minEncryptionVersion && minEncryption > key.latestVersion) {
        throw invalidRequest(`cannot set min encryption version of ${minEncryption}, latest key version is ${key.latestVersion}`);
      }
    }
    if (minEncryption > 0 && minEncryption < minDecryption) {
      throw invalidRequest(
        `cannot set min encryption/decryption values; min encryption version of ${minEncryption} must be greater than or equal to min decryption version of ${minDecryption}`,
      );
    }
    key.minDecryptionVersion = minDecryption;
    key.minEncryptionVersion = minEncryption;
    if (typeof body["deletion_allowed"] === "boolean") key.deletionAllowed = body["deletion_allowed"];
    return ok(keyInfo(key), { warnings });
  }

  function handleTransit(method: string, rest: string[], body: Record<string, unknown>, entry: TokenEntry): Result {
    const [section, name, action, extra] = rest;
    const write = method === "POST" || method === "PUT";
    if (!name || extra !== undefined) throw new VaultHttpError(404, [`1 error occurred:\n\t* unsupported path\n\n`]);
    if (section === "keys" && action === undefined) {
      if (method === "GET") {
        demand(entry, "read");
        const key = keys.get(name);
        if (!key) throw new VaultHttpError(404, []);
        return ok(keyInfo(key));
      }
      if (!write) throw new VaultHttpError(405, ["1 error occurred:\n\t* unsupported operation\n\n"]);
      const existing = keys.get(name);
      demand(entry, existing ? "update" : "create");
      if (existing) return ok(keyInfo(existing), { warnings: [`key ${name} already existed`] });
      const derived = body["derived"] === true;
      const convergent = body["convergent_encryption"] === true;
      if (convergent && !derived) throw invalidRequest("convergent encryption requires derivation to be enabled");
      const type = asString(body["type"]) || "aes256-gcm96";
      if (type !== "aes256-gcm96") throw invalidRequest(`unknown key type ${type}`);
      return ok(keyInfo(createKey(name, derived, convergent, body["exportable"] === true)));
    }
    if (!write) throw new VaultHttpError(405, ["1 error occurred:\n\t* unsupported operation\n\n"]);
    if (section === "keys" && action === "rotate") {
      demand(entry, "rotate");
      const key = keys.get(name);
      if (!key) throw invalidRequest("key not found");
      key.latestVersion += 1;
      key.versions.set(key.latestVersion, { material: randomBytes(32), createdAt: now() });
      return ok(keyInfo(key));
    }
    if (section === "keys" && action === "config") {
      demand(entry, "rotate");
      const key = keys.get(name);
      if (!key) throw invalidRequest(`no existing key named ${name} could be found`);
      return handleKeyConfig(key, body);
    }
    if (action !== undefined) throw new VaultHttpError(404, [`1 error occurred:\n\t* unsupported path\n\n`]);
    if (section === "encrypt") return handleEncrypt(name, body, entry);
    if (section === "decrypt") return handleDecrypt(name, body, entry);
    if (section === "rewrap") return handleRewrap(name, body, entry);
    throw new VaultHttpError(404, [`1 error occurred:\n\t* unsupported path\n\n`]);
  }

  function handleLogin(roles: Map<string, LoginRole>, roleName: string, secret: string, path: string, kind: "approle" | "kubernetes"): Result {
    const role = roles.get(roleName);
    if (kind === "approle" && (!role || role.secret !== secret)) throw invalidRequest("invalid role or secret ID");
    if (kind === "kubernetes" && !role) throw invalidRequest(`invalid role name "${roleName}"`);
    if (!role || role.secret !== secret) throw permissionDenied();
    const entry = issueToken({
      ttlSeconds: role.ttlSeconds,
      renewable: role.options.renewable ?? true,
      policies: ["default", "oauth-broker"],
      capabilities: role.options.capabilities ?? ALL_CAPABILITIES,
      explicitMaxTtlSeconds: role.options.tokenMaxTtlSeconds ?? 0,
      path,
      meta: kind === "approle" ? { role_name: roleName } : { role: roleName },
    });
    return ok(null, { auth: authBlock(entry) });
  }

  function route(method: string, path: string, body: Record<string, unknown>, tokenId: string | undefined): Result {
    if (path === "sys/health") {
      const health = { initialized: true, sealed, standby: false, version: "1.17.0-emulator", cluster_name: "emulator" };
      return { status: sealed ? 503 : 200, body: health };
    }
    if (sealed) throw new VaultHttpError(503, ["Vault is sealed"]);
    if (path === "auth/approle/login" && method !== "GET") {
      return handleLogin(appRoles, asString(body["role_id"]), asString(body["secret_id"]), path, "approle");
    }
    if (path === "auth/kubernetes/login" && method !== "GET") {
      return handleLogin(kubernetesRoles, asString(body["role"]), asString(body["jwt"]), path, "kubernetes");
    }
    const entry = liveToken(tokenId);
    if (!entry) throw permissionDenied();
    if (path === "auth/token/lookup-self" && method === "GET") {
      return ok({
        accessor: entry.accessor,
        creation_time: Math.floor(entry.issuedAt / 1000),
        creation_ttl: entry.creationTtlSeconds,
        display_name: "token",
        entity_id: "",
        expire_time: entry.expiresAt === null ? null : new Date(entry.expiresAt).toISOString(),
        explicit_max_ttl: entry.explicitMaxTtlSeconds,
        id: entry.id,
        issue_time: new Date(entry.issuedAt).toISOString(),
        meta: entry.meta,
        num_uses: 0,
        orphan: true,
        path: entry.path,
        policies: entry.policies,
        renewable: entry.renewable,
        ttl: remainingTtl(entry),
        type: "service",
      });
    }
    if (path === "auth/token/renew-self" && (method === "POST" || method === "PUT")) {
      if (!entry.renewable || entry.expiresAt === null) throw invalidRequest("lease is not renewable");
      const increment = asInt(body["increment"]) || entry.creationTtlSeconds;
      let expiresAt = now() + increment * 1000;
      const warnings: string[] = [];
      if (entry.explicitMaxTtlSeconds > 0) {
        const cap = entry.issuedAt + entry.explicitMaxTtlSeconds * 1000;
        if (expiresAt > cap) {
          expiresAt = cap;
          warnings.push("TTL of requested lease exceeds the maximum allowed; capping the TTL");
        }
      }
      entry.expiresAt = expiresAt;
      return ok(null, { auth: authBlock(entry), warnings });
    }
    const segments = path.split("/");
    if (segments[0] === mount) return handleTransit(method, segments.slice(1), body, entry);
    throw new VaultHttpError(404, [`no handler for route "${path}". route entry not found.`]);
  }

  async function readBody(request: IncomingMessage): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString("utf8").trim();
    if (text === "") return {};
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw invalidRequest(`failed to parse JSON input: ${(error as Error).message}`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw invalidRequest("failed to parse JSON input");
    return parsed as Record<string, unknown>;
  }

  function send(response: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    response.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", "content-length": Buffer.byteLength(text) });
    response.end(text);
  }

  const server = createServer((request, response) => {
    void (async () => {
      const url = new URL(request.url ?? "/", "http://127.0.0.1");
      const method = request.method ?? "GET";
      const header = request.headers["x-vault-token"];
      const bearer = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? "")?.[1];
      const tokenId = (Array.isArray(header) ? header[0] : header) ?? bearer;
      const namespaceHeader = request.headers["x-vault-namespace"];
      const namespace = Array.isArray(namespaceHeader) ? namespaceHeader[0] : namespaceHeader;
      const path = url.pathname.startsWith("/v1/") ? url.pathname.slice(4).replace(/\/+$/, "") : "";
      let status = 500;
      try {
        if (latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, latencyMs));
        const body = await readBody(request);
        if (faults && faults.remaining > 0) {
          faults.remaining -= 1;
          const injected = faults.status;
          if (faults.remaining === 0) faults = null;
          throw new VaultHttpError(injected, [injected === 503 ? "Vault is sealed" : "1 error occurred:\n\t* internal error\n\n"]);
        }
        if (path === "") throw new VaultHttpError(404, []);
        const result = route(method === "PUT" ? "POST" : method, path, body, tokenId);
        status = result.status;
        if (status === 204) {
          response.writeHead(204).end();
        } else {
          send(response, status, result.body);
        }
      } catch (error) {
        if (error instanceof VaultHttpError) {
          status = error.status;
          send(response, status, { errors: error.errors });
        } else {
          status = 500;
          send(response, 500, { errors: [`1 error occurred:\n\t* ${(error as Error).message}\n\n`] });
        }
      } finally {
        const requestIdHeader = request.headers["x-request-id"];
        const requestId = Array.isArray(requestIdHeader) ? requestIdHeader[0] : requestIdHeader;
        log.push({ method, path, status, namespace, tokenPresent: tokenId !== undefined && tokenId !== "", requestId });
      }
    })();
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const normalise = (path: string) => path.replace(/^\/?(v1\/)?/, "").replace(/\/+$/, "");

  return {
    url: `http://127.0.0.1:${port}`,
    rootToken,
    mount,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    seal() {
      sealed = true;
    },
    unseal() {
      sealed = false;
    },
    definePolicy(name, capabilities) {
      namedPolicies.set(name, capabilities);
    },
    setPolicy(token, capabilities) {
      const entry = tokens.get(token);
      if (!entry) throw new Error("setPolicy: unknown token");
      entry.capabilities = { ...NO_CAPABILITIES, ...capabilities };
    },
    createToken(opts = {}) {
      return issueToken(opts).id;
    },
    revokeToken(token) {
      tokens.delete(token);
    },
    revokeIssuedTokens() {
      for (const id of [...tokens.keys()]) if (id !== rootToken) tokens.delete(id);
    },
    addAppRole(roleId, secretId, tokenTtlSeconds, opts = {}) {
      appRoles.set(roleId, { secret: secretId, ttlSeconds: tokenTtlSeconds, options: opts });
    },
    addKubernetesRole(role, jwt, tokenTtlSeconds, opts = {}) {
      kubernetesRoles.set(role, { secret: jwt, ttlSeconds: tokenTtlSeconds, options: opts });
    },
    requestCount(path) {
      if (path === undefined) return log.length;
      const wanted = normalise(path);
      return log.filter((entry) => entry.path === wanted).length;
    },
    requests: () => [...log],
    failNext(status, count = 1) {
      faults = { status, remaining: count };
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    hideKey(name) {
      const hidden = keys.get(name);
      keys.delete(name);
      return () => {
        if (hidden) keys.set(name, hidden);
      };
    },
    key(name) {
      const key = keys.get(name);
      if (!key) return undefined;
      return {
        name,
        derived: key.derived,
        latestVersion: key.latestVersion,
        minDecryptionVersion: key.minDecryptionVersion,
        minEncryptionVersion: key.minEncryptionVersion,
      };
    },
  };
}
