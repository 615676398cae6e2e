/**
 * Scheduled cleanup: expired authorization sessions, tombstones past retention, change-feed
 * events past retention, and the refresh tokens of grants that stayed NEEDS_REAUTH past their
 * configured age. Each step works in bounded batches and skips rows another replica is on.
 */
import type { Logger } from "../observability/logger.js";
import { epochMs, type Clock } from "../domain/ports.js";

export interface CleanupStore {
  purgeExpiredSessions(before: Date, limit: number): Promise<number>;
  purgeTombstones(olderThan: Date, limit: number): Promise<number>;
  purgeChangeEvents(before: Date, limit: number): Promise<number>;
  eraseDeadRefreshTokens(before: Date, limit: number): Promise<number>;
}

export interface CleanupSettings {
  readonly tombstoneDays: number;
  readonly changeFeedDays: number;
  readonly needsReauthEraseDays: number;
}

export type CleanupCounts = Record<"sessions" | "tombstones" | "changeEvents" | "refreshTokensErased", number>;

const BATCH = 1_000;
const DAY_MS = 86_400_000;

/** Repeats a bounded step until it comes back short (or the job is stopped). */
async function drain(step: (limit: number) => Promise<number>, signal: AbortSignal): Promise<number> {
  let total = 0;
  for (;;) {
    const done = await step(BATCH);
    total += done;
    if (done < BATCH || signal.aborted) return total;
  }
}

export async function runCleanup(store: CleanupStore, settings: CleanupSettings, clock: Clock, signal: AbortSignal): Promise<CleanupCounts> {
  const now = epochMs(clock);
  const daysAgo = (days: number) => new Date(now - days * DAY_MS);
  // A setting of 0 keeps that kind of row for ever.
  const keep = (days: number) => days <= 0;
  return {
    sessions: await drain((limit) => store.purgeExpiredSessions(new Date(now), limit), signal),
    tombstones: keep(settings.tombstoneDays) ? 0 : await drain((limit) => store.purgeTombstones(daysAgo(settings.tombstoneDays), limit), signal),
    changeEvents: keep(settings.changeFeedDays) ? 0 : await drain((limit) => store.purgeChangeEvents(daysAgo(settings.changeFeedDays), limit), signal),
    refreshTokensErased: keep(settings.needsReauthEraseDays)
      ? 0
      : await drain((limit) => store.eraseDeadRefreshTokens(daysAgo(settings.needsReauthEraseDays), limit), signal),
  };
}

export function logCleanup(logger: Logger, counts: CleanupCounts): void {
  if (Object.values(counts).some((n) => n > 0)) logger.info(counts, "cleanup removed expired rows");
}
