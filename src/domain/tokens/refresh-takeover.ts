/**
 * What a replica knows when it takes over a refresh lease marked "sent" by another holder: that
 * holder sent (or was about to send) a refresh request with the stored refresh token, and its
 * answer was never recorded. The provider may have processed it and rotated the refresh token;
 * nobody knows. The taker therefore first gives that holder a chance to store what it may keep in
 * memory (a live holder cut off from the database writes its kept rotated token once it is back),
 * then tries the stored refresh token once only (some providers forgive reuse for a short window;
 * providers that do not rotate never mind). A refusal by a provider that may rotate means the
 * grant is lost: the integration needs re-authorization, with the reason `ROTATED_TOKEN_LOST` and
 * an ALERT, never a silent second replay (RFC 9700 §4.14.2: a rotating provider treats a replay as
 * theft and revokes the whole grant). A provider that never rotates refused a revoked grant.
 */
import { BrokerError, isBrokerError } from "../errors.js";
import type { Integration } from "../types.js";

/** A refresh request some lease holder sent with the refresh token of token-set `version`. */
export interface RefreshSentMark {
  readonly version: number;
  readonly by: string;
  readonly at: Date;
}

/** The `status_reason` an integration gets, and the reason its callers see. */
export const ROTATED_TOKEN_LOST = "rotated_token_lost";

/**
 * The mark that makes the refresh token of `currentVersion` possibly spent, if any. A mark for an
 * older version is obsolete: the answer to that request was stored.
 */
export function possiblySpent(mark: RefreshSentMark | undefined, currentVersion: number): RefreshSentMark | undefined {
  return mark !== undefined && mark.version === currentVersion ? mark : undefined;
}

/** Socket failures raised before any byte of the request left this host. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]);
/** Provider failures after which nobody knows whether the provider processed the request. */
const UNKNOWN_OUTCOME_REASONS = new Set(["PROVIDER_TIMEOUT", "PROVIDER_UNREACHABLE", "CANCELLED"]);

/**
 * Whether the provider may have processed a refresh request that failed with `error`: a timeout,
 * a connection lost after the request was written, an abort. A provider's answer (5xx included)
 * and a connection never made are known outcomes.
 */
export function mayHaveBeenProcessed(error: unknown): boolean {
  if (!isBrokerError(error) || !UNKNOWN_OUTCOME_REASONS.has(error.reason)) return false;
  if (error.reason !== "PROVIDER_UNREACHABLE") return true;
  for (let cause: unknown = error.cause, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    const code = "code" in cause ? String(cause.code) : cause.message;
    if (NOT_CONNECTED.has(code)) return false;
  }
  return true;
}

/**
 * Waits until `settled` (the holder that marked the lease stored its answer, or the integration
 * changed state), for at most `waitMs`; true when it did.
 */
export async function awaitSentMarkHolder(options: {
  readonly waitMs: number;
  readonly settled: () => Promise<boolean>;
  /** Resolves at a change notification or after `ms`, whichever comes first. */
  readonly wait: (ms: number) => Promise<void>;
  /** The clock `waitMs` runs on (epoch ms); the system's unless told. */
  readonly now?: () => number;
}): Promise<boolean> {
  const now = options.now ?? Date.now;
  const until = now() + options.waitMs;
  for (let step = 50; ; step = Math.min(step * 2, 1_000)) {
    const remaining = until - now();
    if (remaining <= 0) return false;
    await options.wait(Math.min(step, remaining));
    if (await options.settled()) return true;
  }
}

/**
 * What the taker says when the provider refused the possibly spent refresh token: only what is
 * known. The request of `mark.by` may never have reached the provider.
 */
export function rotatedTokenLostAlert(integration: Integration, mark: RefreshSentMark): string {
  return (
    `ALERT: the stored ${integration.provider} refresh token was refused after replica ${mark.by} sent (or was about to send) a refresh ` +
    `whose answer was never recorded; if that refresh reached the provider, the provider rotated the token and the new one is lost. ` +
    `The integration needs re-authorization`
  );
}

/** The refusal of a possibly spent refresh token, as callers get it. */
export function rotatedTokenLost(integration: Integration, refusal: BrokerError): BrokerError {
  return new BrokerError(
    "integration_needs_reauth",
    `the stored ${integration.provider} refresh token was refused after another refresh with it got no recorded answer (its rotated successor, if any, is lost); the user must connect the account again`,
    {
      cause: refusal,
      reason: "ROTATED_TOKEN_LOST",
      metadata: { integration_id: integration.id, provider: integration.provider, error: ROTATED_TOKEN_LOST },
    },
  );
}
