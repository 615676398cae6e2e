/**
 * Turns a provider's wire failures into `BrokerError`s, the one place that knows what each
 * provider's error answers mean (providers.md, "grant revoked" and "rate limits" rows).
 * Messages and metadata carry the provider's error code only: never a token, a code, a client
 * secret or the provider's free-text description (that goes, scrubbed, to the log via `cause`).
 */
import { ClientError, ResponseBodyError, WWWAuthenticateChallengeError } from "openid-client";
import type { ErrorReason } from "../domain/error-reasons.js";
import { BrokerError } from "../domain/errors.js";
import { PROVIDER_RETRY_AFTER_KEY } from "../domain/tokens/provider-pause.js";
import type { RevocationResult } from "../domain/ports.js";
import { ProviderTransportError } from "./provider-http.js";

export type ProviderOperation =
  | "discovery"
  | "authorization"
  | "code_exchange"
  | "refresh"
  | "revocation"
  | "account";

/** What the broker needs to know about one failed HTTP answer. */
export interface WireFailure {
  readonly status: number;
  /** RFC 6749 §5.2 `error`, or Notion's `code`. */
  readonly error?: string | undefined;
  /** Microsoft's AADSTS number, from `error_codes` or the description. */
  readonly aadsts?: string | undefined;
  /** Google API `errors[].reason` (YouTube's `quotaExceeded`). */
  readonly apiReason?: string | undefined;
  readonly retryAfter?: string | null | undefined;
  /** Provider free text, scrubbed of token-like strings; log only. */
  readonly description?: string | undefined;
}

export interface ErrorContext {
  readonly provider: string;
  readonly operation: ProviderOperation;
  readonly now: Date;
}

const DEFAULT_RATE_LIMIT_RETRY_MS = 30_000;
const DEFAULT_UNAVAILABLE_RETRY_MS = 5_000;
const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;
const REAUTH_REASONS: ReadonlyMap<string, ErrorReason> = new Map([
  ["invalid_grant", "INVALID_GRANT"],
  ["interaction_required", "INTERACTION_REQUIRED"],
  ["consent_required", "CONSENT_REQUIRED"],
  ["login_required", "LOGIN_REQUIRED"],
]);
const CLIENT_ERRORS = new Set(["invalid_client", "unauthorized_client", "unauthorized"]);
const RATE_LIMIT_ERRORS = new Set(["rate_limited", "slow_down"]);
const RATE_LIMIT_REASONS = new Set(["quotaExceeded", "rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded"]);
const UNAVAILABLE_ERRORS = new Set(["temporarily_unavailable", "server_error", "service_unavailable", "service_overload"]);

/** RFC 9110 §10.2.3: delay-seconds or an HTTP-date; `undefined` when absent or unparsable. */
export function parseRetryAfter(value: string | null | undefined, now: Date): number | undefined {
  if (value === null || value === undefined || value.trim() === "") return undefined;
  const trimmed = value.trim();
  let ms: number;
  if (/^\d+$/.test(trimmed)) {
    ms = Number(trimmed) * 1000;
  } else {
    const date = Date.parse(trimmed);
    if (Number.isNaN(date)) return undefined;
    ms = date - now.getTime();
  }
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/** YouTube quotas reset at midnight Pacific time; no Retry-After is sent. */
export function msUntilPacificMidnight(now: Date): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: "America/Los_Angeles",
    hourCycle: "h23",
    hour: "numeric",
    minute: "numeric",
    second: "numeric",
  }).formatToParts(now);
  const part = (type: string): number => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const elapsed = ((part("hour") * 60 + part("minute")) * 60 + part("second")) * 1000 + now.getUTCMilliseconds();
  return Math.max(24 * 60 * 60 * 1000 - elapsed, 1000);
}

/** Replaces anything long enough to be a credential; provider descriptions can echo input. */
export function scrubText(text: string): string {
  return text.replace(/[A-Za-z0-9\-_.~+/=]{32,}/g, "[redacted]").slice(0, 300);
}

/** Reads an error answer's body (OAuth JSON, Notion JSON, Google API JSON or anything else). */
export async function readWireFailure(response: Response): Promise<WireFailure> {
  let body: unknown;
  try {
    const text = await response.text();
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  return wireFailureFromBody(response.status, body, response.headers.get("retry-after"));
}

export function wireFailureFromBody(status: number, body: unknown, retryAfter: string | null | undefined): WireFailure {
  const record = isRecord(body) ? body : {};
  let error = typeof record["error"] === "string" ? record["error"] : undefined;
  if (error === undefined && typeof record["code"] === "string") error = record["code"];
  let apiReason: string | undefined;
  const apiError = record["error"];
  if (isRecord(apiError)) {
    const errors = Array.isArray(apiError["errors"]) ? apiError["errors"] : [];
    const first: unknown = errors[0];
    if (isRecord(first) && typeof first["reason"] === "string") apiReason = first["reason"];
    if (typeof apiError["status"] === "string") error = apiError["status"];
  }
  const rawDescription =
    typeof record["error_description"] === "string"
      ? record["error_description"]
      : typeof record["message"] === "string"
        ? record["message"]
        : isRecord(apiError) && typeof apiError["message"] === "string"
          ? apiError["message"]
          : undefined;
  const codes = Array.isArray(record["error_codes"]) ? record["error_codes"] : [];
  const aadsts =
    typeof codes[0] === "number" || typeof codes[0] === "string"
      ? String(codes[0])
      : rawDescription?.match(/AADSTS(\d+)/)?.[1];
  return {
    status,
    error,
    aadsts,
    apiReason,
    retryAfter,
    description: rawDescription === undefined ? undefined : scrubText(rawDescription),
  };
}

/** The classification table; pure, so every row is pinned by a unit test. */
export function classifyWireFailure(failure: WireFailure, context: ErrorContext): BrokerError {
  const { provider, operation } = context;
  const metadata: Record<string, string> = { provider, operation, http_status: String(failure.status) };
  if (failure.error !== undefined) metadata["error"] = failure.error;
  if (failure.aadsts !== undefined) metadata["aadsts"] = failure.aadsts;
  if (failure.apiReason !== undefined) metadata["api_reason"] = failure.apiReason;
  const cause = failureCause(failure);
  const retryAfterMs = parseRetryAfter(failure.retryAfter, context.now);
  const error = failure.error;

  if (failure.status === 429 || (error !== undefined && RATE_LIMIT_ERRORS.has(error))) {
    // The provider's own pace, for the broker's pause (provider-pause.ts); absent, it backs off.
    if (retryAfterMs !== undefined) metadata[PROVIDER_RETRY_AFTER_KEY] = String(Math.ceil(retryAfterMs / 1000));
    return new BrokerError("provider_rate_limited", `provider "${provider}" is rate limiting the broker; retry later`, {
      cause,
      reason: "PROVIDER_RATE_LIMITED",
      metadata,
      retryAfterMs: retryAfterMs ?? DEFAULT_RATE_LIMIT_RETRY_MS,
    });
  }
  if (failure.status === 403 && failure.apiReason !== undefined && RATE_LIMIT_REASONS.has(failure.apiReason)) {
    // Google documents the daily quota's reset (midnight Pacific): as good as a Retry-After.
    const quotaRetryMs = retryAfterMs ?? (failure.apiReason === "rateLimitExceeded" || failure.apiReason === "userRateLimitExceeded" ? undefined : msUntilPacificMidnight(context.now));
    if (quotaRetryMs !== undefined) metadata[PROVIDER_RETRY_AFTER_KEY] = String(Math.ceil(quotaRetryMs / 1000));
    return new BrokerError("provider_rate_limited", `provider "${provider}" quota is exhausted (${failure.apiReason}); retry later`, {
      cause,
      reason: "PROVIDER_QUOTA_EXCEEDED",
      metadata,
      retryAfterMs: quotaRetryMs ?? DEFAULT_RATE_LIMIT_RETRY_MS,
    });
  }
  if (failure.status >= 500 || (error !== undefined && UNAVAILABLE_ERRORS.has(error))) {
    return new BrokerError("provider_unavailable", `provider "${provider}" is unavailable (HTTP ${failure.status}); retry later`, {
      cause,
      reason: "PROVIDER_UNAVAILABLE",
      metadata,
      retryAfterMs: retryAfterMs ?? DEFAULT_UNAVAILABLE_RETRY_MS,
    });
  }
  const reauthReason = error === undefined ? undefined : REAUTH_REASONS.get(error);
  if (error !== undefined && reauthReason !== undefined && operation !== "account") {
    if (operation === "code_exchange") {
      // RFC 6749 §5.2: the code (or its PKCE verifier) was refused; only a new authorization helps.
      return new BrokerError(
        "authorization_session_invalid",
        `provider "${provider}" refused the authorization code (${error}); start the authorization again`,
        { cause, reason: "AUTHORIZATION_CODE_REJECTED", metadata },
      );
    }
    // oauth-client-security.md §8: the grant is dead; stop retrying and ask the user to reconnect.
    return new BrokerError(
      "integration_needs_reauth",
      `provider "${provider}" no longer accepts the grant (${error}${failure.aadsts === undefined ? "" : `, AADSTS${failure.aadsts}`}); the user must connect the account again`,
      { cause, reason: reauthReason, metadata },
    );
  }
  if (operation !== "account" && ((error !== undefined && CLIENT_ERRORS.has(error)) || failure.status === 401)) {
    // oauth-client-security.md §8: a configuration fault; users' grants are not marked dead.
    return new BrokerError(
      "provider_misconfigured",
      `provider "${provider}" rejected the broker's client credentials (${error ?? `HTTP ${failure.status}`}); check the client id, secret and client authentication method`,
      { cause, reason: "PROVIDER_CLIENT_REJECTED", metadata },
    );
  }
  if (operation === "account" && (failure.status === 401 || failure.status === 403)) {
    return new BrokerError("provider_error", `provider "${provider}" refused the access token for the account lookup (HTTP ${failure.status})`, {
      cause,
      reason: "ACCESS_TOKEN_REJECTED",
      metadata,
    });
  }
  return new BrokerError("provider_error", `provider "${provider}" answered ${operation} with HTTP ${failure.status}${error === undefined ? "" : ` (${error})`}`, {
    cause,
    reason: "PROVIDER_ERROR",
    metadata,
  });
}

/**
 * Maps anything thrown while talking to a provider (openid-client errors, transport failures,
 * `BrokerError`s from deeper layers) to a `BrokerError`. Never attaches the original error as
 * the cause: openid-client errors can hold callback parameters or response bodies.
 */
export function toProviderError(error: unknown, context: ErrorContext): BrokerError {
  if (error instanceof BrokerError) return error;
  const transport = findTransportError(error);
  if (transport !== undefined) return transportError(transport, context);
  if (error instanceof ResponseBodyError) {
    const failure = wireFailureFromBody(error.status, error.cause, error.response.headers.get("retry-after"));
    return classifyWireFailure(failure, context);
  }
  if (error instanceof WWWAuthenticateChallengeError) {
    const challenge = error.cause[0];
    const challengeError = challenge?.parameters["error"];
    return classifyWireFailure(
      { status: error.status, error: challengeError, retryAfter: error.response.headers.get("retry-after") },
      context,
    );
  }
  if (error instanceof ClientError) {
    if (error.code === "OAUTH_TIMEOUT" || error.code === "OAUTH_ABORT") {
      return transportError(new ProviderTransportError("timeout", "provider call timed out"), context);
    }
    if (context.operation === "code_exchange" && comparedClaim(error) === "nonce") {
      // OIDC Core §3.1.3.7: an ID token minted for another authorization request (injection).
      return new BrokerError("authorization_session_invalid", `the ID token from provider "${context.provider}" belongs to another authorization request`, {
        reason: "NONCE_MISMATCH",
        metadata: { provider: context.provider, operation: context.operation },
      });
    }
    if (error.cause instanceof Response) {
      const response = error.cause;
      return classifyWireFailure({ status: response.status, retryAfter: response.headers.get("retry-after") }, context);
    }
    return new BrokerError("provider_error", `provider "${context.provider}" sent an answer the broker cannot use (${error.code ?? "invalid response"})`, {
      cause: new Error(`${error.name} ${error.code ?? ""}: ${error.message}`),
      reason: "PROVIDER_RESPONSE_INVALID",
      metadata: { provider: context.provider, operation: context.operation },
    });
  }
  if (error instanceof DOMException && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return transportError(new ProviderTransportError("timeout", "provider call timed out"), context);
  }
  const described = error instanceof Error ? `${error.name}: ${error.message}` : "non-error value thrown";
  return new BrokerError("provider_error", `provider "${context.provider}" ${context.operation} failed`, {
    cause: new Error(scrubText(described)),
    reason: "PROVIDER_ERROR",
    metadata: { provider: context.provider, operation: context.operation },
  });
}

/**
 * RFC 7009 §2.2.1: on 503 keep the token and retry later. Google answers 400 `invalid_token`
 * for a token that is already dead, which is the outcome revocation wanted.
 */
export function revocationOutcome(error: BrokerError): RevocationResult {
  if (error.code === "provider_unavailable" || error.code === "provider_rate_limited") {
    return { outcome: "retry_later", retryAfterMs: error.retryAfterMs ?? DEFAULT_UNAVAILABLE_RETRY_MS };
  }
  const wireError = error.metadata["error"];
  if (wireError === "invalid_token" || wireError === "invalid_grant") return { outcome: "revoked" };
  throw error;
}

function transportError(error: ProviderTransportError, context: ErrorContext): BrokerError {
  const metadata = { provider: context.provider, operation: context.operation };
  switch (error.kind) {
    case "insecure_endpoint":
      return new BrokerError("provider_misconfigured", error.message, { cause: error, reason: "INSECURE_ENDPOINT", metadata });
    case "aborted":
      return new BrokerError("deadline_exceeded", error.message, { cause: error, reason: "CANCELLED", metadata });
    case "timeout":
      return new BrokerError("provider_unavailable", `provider "${context.provider}" timed out during ${context.operation}; retry later`, {
        cause: error,
        reason: "PROVIDER_TIMEOUT",
        metadata,
        retryAfterMs: DEFAULT_UNAVAILABLE_RETRY_MS,
      });
    case "network":
      return new BrokerError("provider_unavailable", `provider "${context.provider}" cannot be reached; retry later`, {
        cause: error,
        reason: "PROVIDER_UNREACHABLE",
        metadata,
        retryAfterMs: DEFAULT_UNAVAILABLE_RETRY_MS,
      });
  }
}

/** The claim an openid-client JWT claim comparison failed on (`nonce`, `iss`, `aud` ...). */
function comparedClaim(error: ClientError): string | undefined {
  const inner = error.cause instanceof Error ? error.cause.cause : undefined;
  return isRecord(inner) && typeof inner["claim"] === "string" ? inner["claim"] : undefined;
}

function findTransportError(error: unknown): ProviderTransportError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth += 1) {
    if (current instanceof ProviderTransportError) return current;
    current = current instanceof Error ? current.cause : undefined;
  }
  return undefined;
}

function failureCause(failure: WireFailure): Error {
  const parts = [`HTTP ${failure.status}`];
  if (failure.error !== undefined) parts.push(failure.error);
  if (failure.apiReason !== undefined) parts.push(failure.apiReason);
  if (failure.description !== undefined) parts.push(failure.description);
  return new Error(parts.join(": "));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
