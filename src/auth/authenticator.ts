/**
 * Bearer-token authentication (RFC 6750 §2.1) against the configured trusted issuers, or, when
 * none is configured, against the broker's own local signing key only: there is no
 * unauthenticated mode. Every failure gives the caller the same generic answer; the specific
 * reason goes to the log, never the token itself.
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  jwtVerify,
  type CryptoKey,
  type FlattenedJWSInput,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
} from "jose";
import type { JwtIssuerConfig } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import { systemClock, type Clock } from "../domain/ports.js";
import type { Principal, PrincipalKind } from "../domain/types.js";
import type { Logger } from "../observability/logger.js";
import {
  LOCAL_ALGORITHM,
  LOCAL_AUDIENCE,
  LOCAL_ISSUER,
  LOCAL_ISSUER_NAME,
  type LocalVerificationKey,
} from "./local-signing-key.js";
import { parseStaticKeys } from "./static-keys.js";
import { ACCEPTED_JWT_ALGORITHMS } from "../config/read-issuers.js";


/** Longer than any sane JWT; bounds the work an unauthenticated caller can cause. */
const MAX_TOKEN_LENGTH = 16 * 1024;
const LOCAL_CLOCK_SKEW_SECONDS = 30;

export interface JwksOptions {
  /** Keys are re-fetched after this long even when every `kid` is known. Default 10 min. */
  readonly cacheMaxAgeMs?: number | undefined;
  /** After a fetch, an unknown `kid` triggers another fetch only after this long. Default 30 s. */
  readonly cooldownMs?: number | undefined;
  /** Timeout of one JWKS fetch. Default 5 s. */
  readonly timeoutMs?: number | undefined;
}

export interface AuthenticatorOptions {
  readonly issuers: readonly JwtIssuerConfig[];
  /** Trusted only when `issuers` is empty (the embedded default). */
  readonly localKey?: LocalVerificationKey | undefined;
  readonly logger: Logger;
  readonly clock?: Clock | undefined;
  readonly jwks?: JwksOptions | undefined;
}

export interface Authenticator {
  /** Verifies `authorization: Bearer <jwt>`; any failure is `unauthenticated`. */
  authenticate(authorizationHeader: string | null): Promise<Principal>;
  close(): void;
}

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

interface TrustedIssuer {
  readonly name: string;
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
  readonly clockSkewSeconds: number;
  /** `undefined`: the local issuer, whose tokens carry a `kind` claim. */
  readonly principalKind: "user" | "service" | undefined;
  readonly rolesClaim: string;
  readonly allowAdmin: boolean;
  readonly subjectClaim: string;
  readonly keys: KeyResolver;
}

/** Raised internally with the reason to log; the caller only ever sees the generic error. */
class Rejection extends Error {
  constructor(
    message: string,
    readonly level: "debug" | "warn" = "warn",
    readonly details: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const clock = options.clock ?? systemClock;
  const logger = options.logger;
  const trusted = new Map<string, TrustedIssuer>();
  if (options.issuers.length === 0) {
    if (options.localKey === undefined) {
      throw new BrokerError("failed_precondition", "no trusted issuer is configured and no local signing key was given");
    }
    trusted.set(LOCAL_ISSUER, localIssuer(options.localKey));
  } else {
    for (const config of options.issuers) {
      if (trusted.has(config.issuer)) {
        throw new BrokerError("failed_precondition", `issuer ${config.name}: iss ${config.issuer} is configured twice`);
      }
      trusted.set(config.issuer, configuredIssuer(config, options.jwks ?? {}));
    }
  }
  let closed = false;

  async function authenticate(authorizationHeader: string | null): Promise<Principal> {
    try {
      if (closed) throw new Rejection("authenticator is closed");
      const token = bearerToken(authorizationHeader);
      return await verify(token);
    } catch (error) {
      const rejection =
        error instanceof Rejection ? error : new Rejection(`unexpected verification failure: ${describe(error)}`);
      logger[rejection.level]({ reason: rejection.message, ...rejection.details }, "authentication failed");
      throw new BrokerError("unauthenticated", "missing or invalid credentials");
    }
  }

  async function verify(token: string): Promise<Principal> {
    let header: JWSHeaderParameters;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch {
      throw new Rejection("malformed token");
    }
    const alg = typeof header.alg === "string" ? header.alg : "";
    const kid = typeof header.kid === "string" ? header.kid : "";
    const iss = typeof unverified.iss === "string" ? unverified.iss : "";
    const details = { alg, kid, iss };
    if (!ACCEPTED_JWT_ALGORITHMS.includes(alg)) {
      throw new Rejection(`algorithm "${alg}" is never accepted`, "warn", details);
    }
    const issuer = trusted.get(iss);
    if (issuer === undefined) throw new Rejection("untrusted issuer", "warn", details);
    if (!issuer.algorithms.includes(alg)) {
      throw new Rejection(`algorithm not allowed for issuer ${issuer.name}`, "warn", details);
    }
    const verifyOptions: JWTVerifyOptions = {
      issuer: issuer.issuer,
      audience: [...issuer.audiences],
      algorithms: [...issuer.algorithms],
      clockTolerance: issuer.clockSkewSeconds,
      currentDate: clock.now(),
      // A token without an expiry would be valid forever.
      requiredClaims: ["exp"],
    };
    const payload = await verifySignature(token, issuer, verifyOptions, details);
    return toPrincipal(issuer, payload, details);
  }

  return {
    authenticate,
    close() {
      closed = true;
    },
  };
}

async function verifySignature(
  token: string,
  issuer: TrustedIssuer,
  options: JWTVerifyOptions,
  details: Readonly<Record<string, string>>,
): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, issuer.keys, options)).payload;
  } catch (error) {
    if (!isMultipleMatchingKeys(error)) throw verificationRejection(error, issuer, details);
    // Several keys match the header (no `kid`, or a reused one): the token is valid if one verifies.
    let last: unknown = error;
    for await (const key of error) {
      try {
        return (await jwtVerify(token, key, options)).payload;
      } catch (attempt) {
        last = attempt;
      }
    }
    throw verificationRejection(last, issuer, details);
  }
}

function toPrincipal(issuer: TrustedIssuer, payload: JWTPayload, details: Readonly<Record<string, string>>): Principal {
  const subject = claim(payload, issuer.subjectClaim);
  if (typeof subject !== "string" || subject.length === 0) {
    throw new Rejection(`claim ${issuer.subjectClaim} (subject) is missing or not a string`, "warn", details);
  }
  const roles = rolesOf(claim(payload, issuer.rolesClaim));
  let kind: PrincipalKind;
  if (issuer.allowAdmin && roles.includes("admin")) {
    kind = "admin";
  } else if (issuer.principalKind !== undefined) {
    kind = issuer.principalKind;
  } else if (payload["kind"] === "user" || payload["kind"] === "service") {
    kind = payload["kind"];
  } else {
    throw new Rejection('local token without a "kind" claim of "user" or "service"', "warn", details);
  }
  return { kind, subject, issuer: issuer.name };
}

function bearerToken(header: string | null): string {
  if (header === null || header.trim().length === 0) throw new Rejection("no authorization header", "debug");
  // RFC 6750 §2.1: `Bearer` (case-insensitive, RFC 7235 §2.1) followed by the b64token.
  const match = /^\s*bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header);
  const token = match?.[1];
  if (token === undefined) throw new Rejection("authorization header is not a bearer token");
  if (token.length > MAX_TOKEN_LENGTH) throw new Rejection("bearer token is too long");
  return token;
}

function localIssuer(key: LocalVerificationKey): TrustedIssuer {
  return {
    name: LOCAL_ISSUER_NAME,
    issuer: LOCAL_ISSUER,
    audiences: [LOCAL_AUDIENCE],
    algorithms: [LOCAL_ALGORITHM],
    clockSkewSeconds: LOCAL_CLOCK_SKEW_SECONDS,
    principalKind: undefined,
    rolesClaim: "roles",
    // The local key is the operator's own (`npm run token -- --role admin`).
    allowAdmin: true,
    subjectClaim: "sub",
    keys: createLocalJWKSet({ keys: [{ ...key.publicJwk, kid: key.kid, alg: LOCAL_ALGORITHM }] }),
  };
}

function configuredIssuer(config: JwtIssuerConfig, jwks: JwksOptions): TrustedIssuer {
  const algorithms = (config.algorithms.length === 0 ? ACCEPTED_JWT_ALGORITHMS : config.algorithms).filter((alg) =>
    ACCEPTED_JWT_ALGORITHMS.includes(alg),
  );
  if (algorithms.length === 0) {
    throw new BrokerError(
      "failed_precondition",
      `issuer ${config.name}: none of the algorithms ${config.algorithms.join(", ")} is an accepted asymmetric algorithm`,
    );
  }
  if (config.audiences.length === 0) {
    // jose skips the audience check when none is given: a token minted for another service
    // would then be accepted here.
    throw new BrokerError("failed_precondition", `issuer ${config.name}: at least one audience is required`);
  }
  let keys: KeyResolver;
  if (config.jwksUrl !== undefined) {
    keys = createRemoteJWKSet(new URL(config.jwksUrl), {
      cacheMaxAge: jwks.cacheMaxAgeMs ?? 600_000,
      cooldownDuration: jwks.cooldownMs ?? 30_000,
      timeoutDuration: jwks.timeoutMs ?? 5_000,
    });
  } else if (config.staticKeys.length > 0) {
    keys = createLocalJWKSet({ keys: parseStaticKeys(config.name, config.staticKeys) });
  } else {
    throw new BrokerError("failed_precondition", `issuer ${config.name}: needs a JWKS URL or static keys`);
  }
  return {
    name: config.name,
    issuer: config.issuer,
    audiences: config.audiences,
    algorithms,
    clockSkewSeconds: config.clockSkewSeconds,
    principalKind: config.principalKind,
    rolesClaim: config.rolesClaim,
    allowAdmin: config.allowAdmin,
    subjectClaim: config.subjectClaim,
    keys,
  };
}

/**
 * Reads a claim by name, or by dotted path into nested objects (`realm_access.roles`). A literal
 * name wins: namespaced claims such as `https://example.com/roles` contain dots.
 */
function claim(payload: JWTPayload, name: string): unknown {
  if (name in payload) return payload[name];
  let value: unknown = payload;
  for (const part of name.split(".")) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** Roles as a JSON array of strings or a space-separated string (like `scope`, RFC 8693 §4.2). */
function rolesOf(value: unknown): string[] {
  if (typeof value === "string") return value.split(" ").filter((role) => role.length > 0);
  if (Array.isArray(value)) return value.filter((role): role is string => typeof role === "string");
  return [];
}

function verificationRejection(error: unknown, issuer: TrustedIssuer, details: Readonly<Record<string, string>>): Rejection {
  const code = joseCode(error);
  // jose messages name the failed check ("\"exp\" claim timestamp check failed") and never
  // contain the token; their `payload` property (the claims) is deliberately not logged.
  return new Rejection(`issuer ${issuer.name}: ${describe(error)}`, "warn", { ...details, code: code ?? "" });
}

function joseCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isMultipleMatchingKeys(error: unknown): error is AsyncIterable<CryptoKey> {
  return joseCode(error) === "ERR_JWKS_MULTIPLE_MATCHING_KEYS" && Symbol.asyncIterator in (error as object);
}
