/**
 * Obeys a provider that rate-limits the broker. A rate-limited answer (429, Notion's
 * `rate_limited`, Google's `rateLimitExceeded`/`quotaExceeded`) pauses every refresh at that
 * provider on this replica: for the provider's `Retry-After` when it sent one, else for an
 * exponential backoff (1 s doubling per consecutive rate-limited answer, up to `backoffCapMs`).
 * Either is capped at `maxPauseMs`, so an absurd Retry-After (a day) costs one probe per cap
 * instead of every token expiring unrefreshed. While paused, callers are answered at once with
 * the remaining pause as RetryInfo and nothing is sent; the first request after the pause is the
 * probe, and a success ends the backoff. A success never ends a pause: it may answer a request
 * sent before the rate-limited answer arrived. A `Retry-After` of 0 or in the past (clock skew)
 * says nothing usable, so the backoff applies. Other replicas hear of a pause (`adopt`) and obey it too.
 */
import type { ErrorReason } from "../error-reasons.js";
import { BrokerError } from "../errors.js";
import { epochMs, type Clock } from "../ports.js";

export interface ProviderPauses {
  /** Throws `provider_rate_limited` (RetryInfo: the remaining pause) while `provider` is paused. */
  check(provider: string): void;
  /** Pauses `provider` after a rate-limited answer; returns the pause it set, in ms. */
  rateLimited(provider: string, error: BrokerError): number;
  /** Ends the backoff (the next rate-limited answer starts at 1 s again); a pause set still lasts. */
  succeeded(provider: string): void;
  /** Obeys a pause another replica was told (never shortening one, never counting a strike). */
  adopt(notice: ProviderPauseNotice): void;
  /** Remaining pause per paused provider (GetStatus, metrics). */
  paused(): ReadonlyMap<string, number>;
}

/** A pause as replicas tell each other: how long from now, and the reason callers see. */
export interface ProviderPauseNotice {
  readonly provider: string;
  readonly remainingMs: number;
  readonly reason: ErrorReason;
}

/** Metadata key the provider layer sets when the provider said how long to wait. */
export const PROVIDER_RETRY_AFTER_KEY = "retry_after_seconds";

const BACKOFF_BASE_MS = 1_000;

interface Pause {
  until: number;
  strikes: number;
  reason: ErrorReason;
}

export function createProviderPauses(options: {
  readonly clock: Clock;
  readonly maxPauseMs: number;
  readonly backoffCapMs: number;
  readonly onPause?: (notice: ProviderPauseNotice, told: boolean) => void;
}): ProviderPauses {
  const pauses = new Map<string, Pause>();
  const now = () => epochMs(options.clock);
  return {
    check(provider) {
      const pause = pauses.get(provider);
      if (pause === undefined) return;
      const remaining = pause.until - now();
      if (remaining <= 0) return;
      throw new BrokerError("provider_rate_limited", `provider "${provider}" is rate limiting the broker; its token endpoint is paused for ${Math.ceil(remaining / 1000)} s`, {
        reason: pause.reason,
        metadata: { provider, paused: "true" },
        retryAfterMs: remaining,
      });
    },
    rateLimited(provider, error) {
      const previous = pauses.get(provider);
      const strikes = (previous?.strikes ?? 0) + 1;
      const told = error.metadata[PROVIDER_RETRY_AFTER_KEY];
      const toldMs = told === undefined ? Number.NaN : Number(told) * 1000;
      const obeyed = Number.isFinite(toldMs) && toldMs > 0;
      const wanted = obeyed ? toldMs : Math.min(options.backoffCapMs, BACKOFF_BASE_MS * 2 ** (strikes - 1));
      const ms = Math.max(0, Math.min(wanted, options.maxPauseMs));
      // A later answer never shortens a pause already set (concurrent requests answered in any order).
      const until = Math.max(previous?.until ?? 0, now() + ms);
      pauses.set(provider, { until, strikes, reason: error.reason });
      options.onPause?.({ provider, remainingMs: until - now(), reason: error.reason }, obeyed);
      return until - now();
    },
    adopt(notice) {
      const previous = pauses.get(notice.provider);
      const until = now() + Math.max(0, Math.min(notice.remainingMs, options.maxPauseMs));
      if (previous !== undefined && previous.until >= until) return;
      pauses.set(notice.provider, { until, strikes: previous?.strikes ?? 0, reason: notice.reason });
    },
    succeeded(provider) {
      const pause = pauses.get(provider);
      if (pause === undefined) return;
      if (pause.until <= now()) pauses.delete(provider);
      else pause.strikes = 0;
    },
    paused() {
      const at = now();
      return new Map([...pauses].filter(([, pause]) => pause.until > at).map(([provider, pause]) => [provider, pause.until - at]));
    },
  };
}
