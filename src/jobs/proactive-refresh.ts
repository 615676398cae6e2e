/**
 * Refreshes tokens before they expire, so callers rarely wait for a provider. Runs on every
 * replica: each pass keeps up to `concurrency` integrations whose access token expires within the
 * window in flight, claiming for the free slots each time a quarter of them are free (`FOR UPDATE
 * SKIP LOCKED` plus the refresh lease, so replicas never work on the same one), until none is left; each is refreshed
 * through the same path as GetAccessToken. Failures back off per integration
 * (`next_refresh_attempt_at`); a dead grant becomes NEEDS_REAUTH. Never on the hot path.
 */
import type { ClaimedRefresh } from "../domain/ports.js";
import type { TokenService } from "../domain/tokens/token-service.js";
import { systemClock } from "../domain/ports.js";
import { createRateLimiter } from "../domain/rate-limiter.js";
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
  /** Refreshes in flight at once on this replica (`tokens.proactiveRefreshConcurrency`). */
  concurrency?: number;
  /**
   * Refreshes this replica starts per second at most (`tokens.proactiveRefreshPerSecond`); unset
   * or 0: as fast as `concurrency` allows. Bounds the CPU a burst of due tokens takes from callers.
   */
  perSecond?: number;
  /**
   * A pass ends once this many of its refreshes came to nothing: something they share is broken
   * (a sealed key service) and failing faster helps nobody; the next pass comes after the interval.
   */
  failuresPerPass?: number;
  /** Start the interval (false in tests that drive `runOnce`). */
  schedule?: boolean;
}): ProactiveRefresher {
  const concurrency = Math.max(1, options.concurrency ?? 16);
  const failuresPerPass = options.failuresPerPass ?? 100;
  const perSecond = options.perSecond ?? 0;
  const pace = perSecond > 0 ? createStartPace(perSecond, concurrency) : undefined;
  const claimBatch = Math.max(1, Math.ceil(concurrency / 4));

  async function refreshOne(next: ClaimedRefresh): Promise<boolean> {
    try {
      return await options.tokenService.refreshAhead(next, options.windowMs);
    } catch (error) {
      options.logger.warn({ err: error, integrationId: next.integrationId, provider: next.provider }, "proactive refresh failed; it backs off");
      return false;
    }
  }

  async function pass(signal: AbortSignal): Promise<number> {
    let refreshed = 0;
    let claimedCount = 0;
    // One claim per integration per pass for those not refreshed: one whose refresh failed
    // without a backoff (a sealed key service) is otherwise free again at once and would be
    // claimed over and over. A refreshed one is no longer due, so the list stays short.
    const unrefreshed = new Set<string>();
    // Also never those still in flight: one whose lease comes back while a claim runs would be
    // free to that claim, whose exclusions were read before.
    const inFlight = new Set<string>();
    const running = new Set<Promise<void>>();
    let exhausted = false;
    // A pass goes on while anything is due: every free slot is claimed for as soon as it frees,
    // so `concurrency` refreshes stay in flight. Only what is worked on right away is claimed: a
    // lease held by a queued item would make GetAccessToken on other replicas wait for nothing.
    try {
      while (!exhausted && !signal.aborted && unrefreshed.size < failuresPerPass) {
        const slots = concurrency - running.size;
        // Unpaced, a claim waits for a quarter of the slots: one statement per few refreshes
        // instead of one per refresh, the claim being the costliest statement of a refresh.
        const unpaced = running.size === 0 || slots >= claimBatch ? slots : 0;
        const free = pace === undefined || slots === 0 ? unpaced : pace.take(slots);
        if (free === 0 && pace !== undefined && slots > 0) {
          // A slot is free but the pace is not: wait for the pace or a slot, whichever comes first.
          await pace.nextStart(signal, running);
          continue;
        }
        if (free > 0) {
          const claimed = await options.claim({
            withinMs: options.windowMs,
            limit: free,
            owner: options.replicaId,
            ttlMs: options.leaseMs,
            exclude: [...unrefreshed, ...inFlight],
          });
          claimedCount += claimed.length;
          exhausted = claimed.length < free;
          for (const next of claimed) {
            inFlight.add(next.integrationId);
            const work: Promise<void> = refreshOne(next).then((ok) => {
              if (ok) refreshed += 1;
              else unrefreshed.add(next.integrationId);
              inFlight.delete(next.integrationId);
              running.delete(work);
            });
            running.add(work);
          }
        }
        if (!exhausted && running.size > 0) await Promise.race(running);
      }
    } finally {
      // A failed claim ends the pass once the refreshes already under way are done.
      await Promise.all(running);
    }
    if (claimedCount > 0) options.logger.info({ claimed: claimedCount, refreshed }, "proactive refresh pass");
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

/**
 * The pace of a replica's refresh starts: the broker's token bucket (rate-limiter.ts), one bucket
 * for the refresher's lifetime so a new pass does not start with a fresh burst. Its burst is no
 * more than the slots nor than a second's worth, so a pass that finds thousands due spreads them.
 */
function createStartPace(perSecond: number, slots: number) {
  const limiter = createRateLimiter({ clock: systemClock });
  const limit = { ratePerSecond: perSecond, burst: Math.max(1, Math.min(slots, Math.floor(perSecond))) };
  let retryAfterMs = 1;
  return {
    /** Takes up to `wanted` starts now; how many it got. */
    take(wanted: number): number {
      let taken = 0;
      while (taken < wanted) {
        const result = limiter.take("proactive-refresh", limit);
        if (!result.allowed) {
          retryAfterMs = result.retryAfterMs;
          break;
        }
        taken += 1;
      }
      return taken;
    },
    /** Until the next start is allowed, a running refresh ends, or the job stops. */
    async nextStart(signal: AbortSignal, running: ReadonlySet<Promise<void>>): Promise<void> {
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      const paced = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, retryAfterMs);
        onAbort = resolve;
        signal.addEventListener("abort", onAbort, { once: true });
      });
      try {
        await Promise.race([paced, ...running]);
      } finally {
        clearTimeout(timer);
        if (onAbort !== undefined) signal.removeEventListener("abort", onAbort);
      }
    },
  };
}
