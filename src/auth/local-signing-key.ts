/**
 * The broker's own signing key for the embedded default. With no trusted issuer configured there
 * is still no unauthenticated mode: the broker trusts only tokens it signed itself with this
 * Ed25519 key, and `npm run token` mints short-lived ones for trying it out.
 */
import { randomUUID } from "node:crypto";
import { link, mkdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  SignJWT,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JWK,
} from "jose";
import { BrokerError } from "../domain/errors.js";

export const LOCAL_ISSUER = "oauth-broker-local";
export const LOCAL_AUDIENCE = "oauth-broker";
/** The issuer name local principals carry (`Principal.issuer`). */
export const LOCAL_ISSUER_NAME = "local";
export const LOCAL_ALGORITHM = "EdDSA";
export const SIGNING_KEY_FILE = "signing-key.json";

export interface LocalSigningKey {
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
  readonly kid: string;
  readonly issuer: typeof LOCAL_ISSUER;
  readonly audience: typeof LOCAL_AUDIENCE;
}

/** What a verifier needs: no private key. */
export type LocalVerificationKey = Pick<LocalSigningKey, "publicJwk" | "kid">;

export interface LocalTokenClaims {
  readonly subject: string;
  readonly kind: "user" | "service";
  readonly roles?: readonly string[] | undefined;
  /** Default 3600. */
  readonly ttlSeconds?: number | undefined;
  /** Issue time; defaults to now. */
  readonly now?: Date | undefined;
}

interface StoredKey {
  readonly version: 1;
  readonly kid: string;
  readonly alg: typeof LOCAL_ALGORITHM;
  readonly privateJwk: JWK;
  readonly createdAt: string;
}

/**
 * Loads `<dataDir>/signing-key.json`, or creates it (mode 0600) when absent. Creation is atomic
 * and race-free: the key is written to a private temporary file and hard-linked into place, so a
 * concurrent starter either wins or reads the winner's key; a half-written file never appears.
 * A key file readable by group or others is refused: anyone who can read it can mint tokens.
 */
export async function loadOrCreateLocalSigningKey(dataDir: string): Promise<LocalSigningKey> {
  const path = join(dataDir, SIGNING_KEY_FILE);
  const existing = await readStoredKey(path);
  if (existing !== undefined) return fromStored(existing, path);

  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const { privateKey } = await generateKeyPair(LOCAL_ALGORITHM, { crv: "Ed25519", extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const stored: StoredKey = {
    version: 1,
    kid: await calculateJwkThumbprint(publicPart(privateJwk)),
    alg: LOCAL_ALGORITHM,
    privateJwk,
    createdAt: new Date().toISOString(),
  };
  const temporary = join(dataDir, `.${SIGNING_KEY_FILE}.${randomUUID()}.tmp`);
  try {
    await writeFile(temporary, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600, flag: "wx" });
    await link(temporary, path);
  } catch (error) {
    if (!isErrno(error, "EEXIST")) {
      throw new BrokerError("internal", `cannot create the local signing key in ${dataDir}`, { cause: error });
    }
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
  const winner = await readStoredKey(path);
  if (winner === undefined) {
    throw new BrokerError("internal", `the local signing key ${path} vanished while it was being created`);
  }
  return fromStored(winner, path);
}

/**
 * Mints a local JWT (`iss` oauth-broker-local, `aud` oauth-broker) carrying a `kind` claim and,
 * optionally, `roles`. Short-lived by default: these tokens are for trying the broker out.
 */
export async function signLocalToken(key: LocalSigningKey, claims: LocalTokenClaims): Promise<string> {
  const ttl = claims.ttlSeconds ?? 3600;
  if (!Number.isInteger(ttl) || ttl <= 0) {
    throw new BrokerError("invalid_argument", "ttlSeconds must be a positive whole number of seconds");
  }
  if (claims.subject.length === 0) {
    throw new BrokerError("invalid_argument", "subject must not be empty");
  }
  const issuedAt = Math.floor((claims.now ?? new Date()).getTime() / 1000);
  const payload: Record<string, unknown> = { kind: claims.kind };
  if (claims.roles !== undefined && claims.roles.length > 0) payload["roles"] = [...claims.roles];
  return new SignJWT(payload)
    .setProtectedHeader({ alg: LOCAL_ALGORITHM, kid: key.kid, typ: "JWT" })
    .setIssuer(key.issuer)
    .setAudience(key.audience)
    .setSubject(claims.subject)
    .setIssuedAt(issuedAt)
    .setNotBefore(issuedAt)
    .setExpirationTime(issuedAt + ttl)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

async function readStoredKey(path: string): Promise<StoredKey | undefined> {
  let text: string;
  try {
    const info = await stat(path);
    if ((info.mode & 0o077) !== 0) {
      throw new BrokerError(
        "failed_precondition",
        `the local signing key ${path} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 on it`,
        { reason: "LOCAL_SIGNING_KEY_INVALID" },
      );
    }
    text = await readFile(path, "utf8");
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    if (error instanceof BrokerError) throw error;
    throw new BrokerError("internal", `cannot read the local signing key ${path}`, { cause: error });
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (!isStoredKey(parsed)) throw new Error("unexpected shape");
    return parsed;
  } catch (error) {
    throw new BrokerError("failed_precondition", `the local signing key ${path} is corrupt; remove it to create a new one`, {
      cause: error,
      reason: "LOCAL_SIGNING_KEY_INVALID",
    });
  }
}

async function fromStored(stored: StoredKey, path: string): Promise<LocalSigningKey> {
  try {
    const privateKey = await importJWK(stored.privateJwk, LOCAL_ALGORITHM);
    if (!isCryptoKey(privateKey)) throw new Error("not an asymmetric key");
    return {
      privateKey,
      publicJwk: { ...publicPart(stored.privateJwk), alg: LOCAL_ALGORITHM, use: "sig", kid: stored.kid },
      kid: stored.kid,
      issuer: LOCAL_ISSUER,
      audience: LOCAL_AUDIENCE,
    };
  } catch (error) {
    throw new BrokerError("failed_precondition", `the local signing key ${path} cannot be imported`, {
      cause: error,
      reason: "LOCAL_SIGNING_KEY_INVALID",
    });
  }
}

/** RFC 8037 §2: an OKP public key is `kty`, `crv` and `x`; `d` is the private part. */
function publicPart(jwk: JWK): JWK {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
}

function isStoredKey(value: unknown): value is StoredKey {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  const jwk = record["privateJwk"];
  if (typeof jwk !== "object" || jwk === null) return false;
  const key = jwk as Record<string, unknown>;
  return (
    typeof record["kid"] === "string" &&
    key["kty"] === "OKP" &&
    key["crv"] === "Ed25519" &&
    typeof key["x"] === "string" &&
    typeof key["d"] === "string"
  );
}

function isCryptoKey(value: unknown): value is CryptoKey {
  return typeof value === "object" && value !== null && "type" in value && "algorithm" in value;
}

function isErrno(error: unknown, code: string): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === code;
}
