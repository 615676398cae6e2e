/**
 * Reads a token endpoint answer (RFC 6749 §5.1) into the broker's `TokenSet`: the granted scopes
 * as the provider states them, a finite expiry, and the refresh token only when it is new.
 */
import { BrokerError } from "../domain/errors.js";
import type { TokenSet } from "../domain/types.js";

export interface TokenResponseFields {
  readonly access_token?: unknown;
  readonly token_type?: unknown;
  readonly expires_in?: unknown;
  readonly refresh_token?: unknown;
  readonly scope?: unknown;
}

export interface TokenSetOptions {
  readonly provider: string;
  readonly now: Date;
  /** Used when `expires_in` is absent: a missing lifetime never means "forever". */
  readonly defaultLifetimeSeconds: number;
  /**
   * RFC 6749 §5.1: `scope` may be omitted when it equals what was requested. On a code exchange
   * that is the requested scopes; on a refresh (§6) the grant's scopes are unchanged, so the
   * caller passes none and keeps what it stored.
   */
  readonly scopesWhenOmitted: readonly string[];
  /** The refresh token that was used: echoing it back is not a rotation. */
  readonly previousRefreshToken?: string | undefined;
}

export function toTokenSet(response: TokenResponseFields, options: TokenSetOptions): TokenSet {
  const accessToken = response.access_token;
  if (typeof accessToken !== "string" || accessToken === "") {
    throw new BrokerError("provider_error", `provider "${options.provider}" answered without an access token`, {
      reason: "ACCESS_TOKEN_MISSING",
      metadata: { provider: options.provider },
    });
  }
  const lifetime = parseLifetime(response.expires_in) ?? options.defaultLifetimeSeconds;
  const refreshToken =
    typeof response.refresh_token === "string" &&
    response.refresh_token !== "" &&
    response.refresh_token !== options.previousRefreshToken
      ? response.refresh_token
      : undefined;
  return {
    accessToken,
    tokenType: normalizeTokenType(response.token_type),
    expiresAt: new Date(options.now.getTime() + lifetime * 1000),
    refreshToken,
    scopes: grantedScopes(response.scope, options),
  };
}

/**
 * Only an omitted `scope` means "as requested"; any other non-string (a list, a number, `null`)
 * is an answer the broker cannot read, and reading it as "as requested" would let a malformed
 * answer pass the widened-grant check.
 */
function grantedScopes(scope: unknown, options: TokenSetOptions): string[] {
  if (scope === undefined) return [...options.scopesWhenOmitted];
  if (typeof scope === "string") return splitScopes(scope);
  throw new BrokerError("provider_error", `provider "${options.provider}" answered with a scope that is not a space-delimited string`, {
    reason: "PROVIDER_RESPONSE_INVALID",
    metadata: { provider: options.provider },
  });
}

/** RFC 6749 §3.3: space-delimited, order irrelevant; duplicates dropped. */
export function splitScopes(scope: string): string[] {
  return [...new Set(scope.split(/[\s]+/).filter((s) => s !== ""))];
}

function parseLifetime(value: unknown): number | undefined {
  const seconds = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  return typeof seconds === "number" && Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : undefined;
}

/** RFC 6749 §7.1: the type is case-insensitive; report the canonical spelling. */
function normalizeTokenType(value: unknown): string {
  if (typeof value !== "string" || value === "") return "Bearer";
  const lower = value.toLowerCase();
  if (lower === "bearer") return "Bearer";
  if (lower === "dpop") return "DPoP";
  return value;
}
