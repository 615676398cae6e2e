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
import { epochMs, systemClock, type Clock } from "../domain/ports.js";
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
import { createVerifiedTokenCache, VERIFIED_TOKEN_CACHE_MAX_ENTRIES } from "./verified-token-cache.js";
import { ACCEPTED_JWT_ALGORITHMS, DEFAULT_MAX_TOKEN_LIFETIME_SECONDS } from "../config/read-issuers.js";
import { lifetimeRefusal } from "./token-lifetime.js";
import { CredentialRejected, describeError, joseCode, Rejection, verificationFailure } from "./auth-failure.js";

export { authFailureReason, CredentialRejected, type AuthFailureReason } from "./auth-failure.js";

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
  /** Verified tokens kept (verified-token-cache.ts); 0 verifies every call. Default 10,000. */
  readonly verifiedCacheMaxEntries?: number | undefined;
}

export interface Authenticator {
  /** Verifies `authorization: Bearer <jwt>`; any failure is `unauthenticated`. */
  authenticate(authorizationHeader: string | null): Promise<Principal>;
  /**
   * The principal `authenticate` would answer with at once, without waiting on anything: a token
   * it verified before, not expired, from an issuer whose keys are fixed (local or static keys)
   * and whose key resolver has since confirmed the verifying key once. Otherwise undefined:
   * `authenticate` decides (and logs any failure).
   *
   * `call`: an object that lives exactly as long as one call (grpc-js's parsed request metadata).
   * A second ask for the same call (the request gate admits it, then the warm path serves it) is
   * then a lookup instead of a second digest of the token; the answer is kept for that object's
   * life only, and its expiry is checked again.
   */
  authenticateWarm(authorizationHeader: string | null, call?: object): Principal | undefined;
  close(): void;
}

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

interface TrustedIssuer {
  readonly name: string;
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
  readonly clockSkewSeconds: number;
  readonly maxTokenLifetimeSeconds: number;
  /** `undefined`: the local issuer, whose tokens carry a `kind` claim. */
  readonly principalKind: "user" | "service" | undefined;
  readonly rolesClaim: string;
  readonly allowAdmin: boolean;
  readonly subjectClaim: string;
  readonly keys: KeyResolver;
  /** Its key set never changes (local key, static keys): a key it confirmed once stays current. */
  readonly fixedKeys: boolean;
}

/** A verified token: who it names, until when, and the key (of the issuer's current key set) that verified it. */
interface VerifiedEntry {
  readonly principal: Principal;
  readonly expiresAtMs: number;
  readonly issuer: TrustedIssuer;
  readonly key: CryptoKey;
  readonly header: JWSHeaderParameters;
  readonly input: FlattenedJWSInput;
  /** Set once the issuer's resolver handed out `key` again for a later call (fromCache). */
  confirmed: boolean;
}

export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const clock = options.clock ?? systemClock;
  const logger = options.logger;
  const trusted = new Map<string, TrustedIssuer>();
  if (options.issuers.length === 0) {
    if (options.localKey === undefined) {
      throw new BrokerError("failed_precondition", "no trusted issuer is configured and no local signing key was given", {
        reason: "TRUSTED_ISSUER_INVALID",
      });
    }
    trusted.set(LOCAL_ISSUER, localIssuer(options.localKey));
  } else {
    for (const config of options.issuers) {
      if (trusted.has(config.issuer)) {
        throw new BrokerError("failed_precondition", `issuer ${config.name}: iss ${config.issuer} is configured twice`, {
          reason: "TRUSTED_ISSUER_INVALID",
        });
      }
      trusted.set(config.issuer, configuredIssuer(config, options.jwks ?? {}));
    }
  }
  let closed = false;
  const verified = createVerifiedTokenCache<VerifiedEntry>(options.verifiedCacheMaxEntries ?? VERIFIED_TOKEN_CACHE_MAX_ENTRIES);

  async function authenticate(authorizationHeader: string | null): Promise<Principal> {
    try {
      if (closed) throw new Rejection("authenticator_closed", "authenticator is closed");
      const token = bearerToken(authorizationHeader);
      const cacheKey = verified.keyOf(token);
      return (await fromCache(cacheKey)) ?? (await verify(token, cacheKey));
    } catch (error) {
      const rejection =
        error instanceof Rejection ? error : new Rejection("unexpected", `unexpected verification failure: ${describeError(error)}`);
      logger[rejection.level]({ reason: rejection.message, failure: rejection.reason, ...rejection.details }, "authentication failed");
      throw new BrokerError("unauthenticated", "missing or invalid credentials", {
        cause: new CredentialRejected(rejection.reason, rejection.message),
      });
    }
  }

  /**
   * A token verified before, if it still holds: not expired (no skew allowance) and its key is
   * still the one the issuer's resolver hands out. Asking the resolver keeps its rules in force
   * (re-fetch of a set older than its max age, refusal of a key no longer in the set).
   */
  async function fromCache(cacheKey: string): Promise<Principal | undefined> {
    const entry = verified.get(cacheKey, epochMs(clock));
    if (entry === undefined) return undefined;
    const current = await entry.issuer.keys(entry.header, entry.input).catch(() => undefined);
    if (current === entry.key) {
      entry.confirmed = true;
      return entry.principal;
    }
    verified.delete(cacheKey);
    return undefined;
  }

  async function verify(token: string, cacheKey: string): Promise<Principal> {
    let header: JWSHeaderParameters;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch {
      throw new Rejection("malformed", "malformed token");
    }
    const alg = typeof header.alg === "string" ? header.alg : "";
    const kid = typeof header.kid === "string" ? header.kid : "";
    const iss = typeof unverified.iss === "string" ? unverified.iss : "";
    const details = { alg, kid, iss };
    if (!ACCEPTED_JWT_ALGORITHMS.includes(alg)) {
      throw new Rejection("algorithm_not_allowed", `algorithm "${alg}" is never accepted`, "warn", details);
    }
    const issuer = trusted.get(iss);
    if (issuer === undefined) throw new Rejection("unknown_issuer", "untrusted issuer", "warn", details);
    if (!issuer.algorithms.includes(alg)) {
      throw new Rejection("algorithm_not_allowed", `algorithm not allowed for issuer ${issuer.name}`, "warn", details);
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
    const { payload, key } = await verifySignature(token, issuer, verifyOptions, details);
    const refusal = lifetimeRefusal(payload, issuer, epochMs(clock));
    if (refusal !== undefined) throw new Rejection(refusal.reason, `issuer ${issuer.name}: ${refusal.message}`, "warn", details);
    const principal = Object.freeze(toPrincipal(issuer, payload, details));
    const [protectedHeader = "", body = ""] = token.split(".");
    if (typeof payload.exp === "number") {
      verified.set(cacheKey, {
        principal,
        expiresAtMs: payload.exp * 1000,
        issuer,
        key,
        header,
        // Not the signature: no key resolver reads it (jose's look at the headers), and without
        // it nothing cached here can be presented as the token (verified-token-cache.ts).
        input: { protected: protectedHeader, payload: body, signature: "" },
        confirmed: false,
      });
    }
    return principal;
  }

  // On the call's own object, so no answer outlives its call; under this authenticator's own
  // symbol, since a WeakMap set on every call cost the warm path more than its rate limit.
  const answeredBy = Symbol("authenticator answer");
  type AnsweredCall = { [answeredBy]?: { readonly header: string; readonly entry: VerifiedEntry } };

  function authenticateWarm(authorizationHeader: string | null, call?: object): Principal | undefined {
    if (closed || authorizationHeader === null) return undefined;
    const nowMs = epochMs(clock);
    const answered = call === undefined ? undefined : (call as AnsweredCall)[answeredBy];
    if (answered !== undefined && answered.header === authorizationHeader) return answered.entry.expiresAtMs > nowMs ? answered.entry.principal : undefined;
    let token: string;
    try {
      token = bearerToken(authorizationHeader);
    } catch {
      return undefined;
    }
    const entry = verified.get(verified.keyOf(token), nowMs);
    if (entry === undefined || !entry.confirmed || !entry.issuer.fixedKeys) return undefined;
    if (call !== undefined) (call as AnsweredCall)[answeredBy] = { header: authorizationHeader, entry };
    return entry.principal;
  }

  return {
    authenticate,
    authenticateWarm,
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
): Promise<{ payload: JWTPayload; key: CryptoKey }> {
  let used: CryptoKey | undefined;
  const capture: KeyResolver = async (header, input) => (used = await issuer.keys(header, input));
  try {
    const { payload } = await jwtVerify(token, capture, options);
    if (used === undefined) throw new Error("the key resolver was not consulted");
    return { payload, key: used };
  } catch (error) {
    if (!isMultipleMatchingKeys(error)) throw verificationRejection(error, issuer, details);
    // Several keys match the header (no `kid`, or a reused one): the token is valid if one verifies.
    let last: unknown = error;
    for await (const key of error) {
      try {
        return { payload: (await jwtVerify(token, key, options)).payload, key };
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
    throw new Rejection("invalid_claims", `claim ${issuer.subjectClaim} (subject) is missing or not a string`, "warn", details);
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
    throw new Rejection("invalid_claims", 'local token without a "kind" claim of "user" or "service"', "warn", details);
  }
  return { kind, subject, issuer: issuer.name };
}

function bearerToken(header: string | null): string {
  if (header === null || header.trim().length === 0) throw new Rejection("missing_credentials", "no authorization header", "debug");
  // RFC 6750 §2.1: `Bearer` (case-insensitive, RFC 7235 §2.1) followed by the b64token.
  const token = /^\s*bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header)?.[1];
  if (token === undefined) throw new Rejection("not_bearer", "authorization header is not a bearer token");
  if (token.length > MAX_TOKEN_LENGTH) throw new Rejection("token_too_long", "bearer token is too long");
  return token;
}

function localIssuer(key: LocalVerificationKey): TrustedIssuer {
  return {
    name: LOCAL_ISSUER_NAME,
    issuer: LOCAL_ISSUER,
    audiences: [LOCAL_AUDIENCE],
    algorithms: [LOCAL_ALGORITHM],
    clockSkewSeconds: LOCAL_CLOCK_SKEW_SECONDS,
    // `npm run token --ttl` mints at most this much.
    maxTokenLifetimeSeconds: DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
    principalKind: undefined,
    rolesClaim: "roles",
    // The local key is the operator's own (`npm run token -- --role admin`).
    allowAdmin: true,
    subjectClaim: "sub",
    keys: createLocalJWKSet({ keys: [{ ...key.publicJwk, kid: key.kid, alg: LOCAL_ALGORITHM }] }),
    fixedKeys: true,
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
      { reason: "TRUSTED_ISSUER_INVALID" },
    );
  }
  if (config.audiences.length === 0) {
    // jose skips the audience check when none is given: a token minted for another service
    // would then be accepted here.
    throw new BrokerError("failed_precondition", `issuer ${config.name}: at least one audience is required`, { reason: "TRUSTED_ISSUER_INVALID" });
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
    throw new BrokerError("failed_precondition", `issuer ${config.name}: needs a JWKS URL or static keys`, { reason: "TRUSTED_ISSUER_INVALID" });
  }
  return {
    name: config.name,
    issuer: config.issuer,
    audiences: config.audiences,
    algorithms,
    clockSkewSeconds: config.clockSkewSeconds,
    maxTokenLifetimeSeconds: config.maxTokenLifetimeSeconds,
    principalKind: config.principalKind,
    rolesClaim: config.rolesClaim,
    allowAdmin: config.allowAdmin,
    subjectClaim: config.subjectClaim,
    keys,
    fixedKeys: config.jwksUrl === undefined,
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
  return new Rejection(verificationFailure(error, code), `issuer ${issuer.name}: ${describeError(error)}`, "warn", { ...details, code: code ?? "" });
}

function isMultipleMatchingKeys(error: unknown): error is AsyncIterable<CryptoKey> {
  return joseCode(error) === "ERR_JWKS_MULTIPLE_MATCHING_KEYS" && Symbol.asyncIterator in (error as object);
}
