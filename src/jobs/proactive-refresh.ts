/**
 * Refreshes tokens before they expire, so callers rarely wait for a provider. Runs on every
 * replica: each tick claims a batch of integrations whose access token expires within the window
 * (`FOR UPDATE SKIP LOCKED` plus the refresh lease, so replicas never work on the same one) and
 * refreshes them through the same path as GetAccessToken. Failures back off per integration
 * (`next_refresh_attempt_at`); a dead grant becomes NEEDS_REAUTH. Never on the hot path.
 */
import type { ClaimedRefresh } from "../storage/token-set-repository.js";
import type { TokenService } from "../domain/tokens/token-service.js";
import type { Logger } from "../observability/logger.js";
import { startPeriodicJob, type PeriodicJob } from "./periodic.js";

/** `runOnce` (tests, and the interval) resolves with the number refreshed at providers. */
export type ProactiveRefresher = PeriodicJob<number>;

export function startProactiveRefresher(options: {
  claim: (request: { withinMs: number; limit: number; owner: string; ttlMs: number; exclude: readonly string[] }) => Promise<ClaimedRefresh[]>;
  tokenService: Pick<TokenService, "refreshAhead">;
  logger: Logger;
  replicaId: string;
  windowMs: number;
  intervalMs: number;
  leaseMs: number;
  /** Integrations claimed per pass; at most `concurrency` refresh at once. */
  batchSize?: number;
  concurrency?: number;
  /** Start the interval (false in tests that drive `runOnce`). */
  schedule?: boolean;
}): ProactiveRefresher {
  const batchSize = options.batchSize ?? 50;
  const concurrency = options.concurrency ?? 4;

  async function pass(signal: AbortSignal): Promise<number> {
    let refreshed = 0;
    // One claim per integration per pass: one whose refresh failed without a backoff (a sealed
    // key service) is otherwise free again at once and would be claimed over and over.
    const claimedThisPass = new Set<string>();
    // Claim only what is worked on right away: a lease held by a queued item would make
    // GetAccessToken on other replicas wait for nothing.
    while (!signal.aborted && claimedThisPass.size < batchSize) {
      const limit = Math.min(concurrency, batchSize - claimedThisPass.size);
      const claimed = await options.claim({
        withinMs: options.windowMs,
        limit,
        owner: options.replicaId,
        ttlMs: options.leaseMs,
        exclude: [...claimedThisPass],
      });
      for (const next of claimed) claimedThisPass.add(next.integrationId);
      const results = await Promise.all(
        claimed.map(async (next) => {
          try {
            return await options.tokenService.refreshAhead(next.integrationId, options.windowMs);
          } catch (error) {
            options.logger.warn({ err: error, integrationId: next.integrationId, provider: next.provider }, "proactive refresh failed; it backs off");
            return false;
          }
        }),
      );
      refreshed += results.filter(Boolean).length;
      if (claimed.length < limit) break;
    }
    if (claimedThisPass.size > 0) options.logger.info({ claimed: claimedThisPass.size, refreshed }, "proactive refresh pass");
    return refreshed;
  }

  // The first pass comes one interval after the start, like every later one after its predecessor.
  return startPeriodicJob({
    name: "proactive-refresh",
    intervalMs: options.intervalMs,
    firstRunAfterMs: options.intervalMs,
    enabled: options.schedule !== false,
    logger: options.logger,
    run: pass,
    onError: (error) => options.logger.warn({ err: error }, "proactive refresh pass failed"),
  });
}
