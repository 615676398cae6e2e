/**
 * WatchIntegrations: the stream of integration changes a caller may see, resumable from a
 * cursor. The feed itself lives in PostgreSQL (written by the database in the transaction of
 * each change, ids in commit order), so every replica serves the same feed and a reconnecting
 * watcher that passes its last cursor receives every later change exactly once.
 */
import { BrokerError } from "./errors.js";
import type { ChangeFeedStore, ChangeFilter } from "./ports.js";
import type { IntegrationChange } from "./types.js";

export type { ChangeFeedStore, ChangeFilter, ChangePage } from "./ports.js";
export type { IntegrationChange, IntegrationChangeType } from "./types.js";

/** One message of the stream: a change, or only a position (start and heartbeats). */
export interface WatchItem {
  readonly change?: IntegrationChange | undefined;
  readonly cursor: number;
}

export interface WatchSettings {
  /** Fallback poll when no notification arrives (a lost NOTIFY delays, never loses, a change). */
  readonly pollMs: number;
  /** A position-only message after this long without one, so idle filtered watchers keep a fresh cursor. */
  readonly heartbeatMs: number;
  readonly batchSize: number;
}

export const DEFAULT_WATCH_SETTINGS: WatchSettings = { pollMs: 5_000, heartbeatMs: 30_000, batchSize: 200 };

function cursorExpired(horizon: number): BrokerError {
  return new BrokerError(
    "failed_precondition",
    "the cursor is older than the change feed's retention; list the integrations again, then watch without a cursor",
    { reason: "CURSOR_EXPIRED", metadata: { oldest_resumable_cursor: String(horizon) } },
  );
}

export async function* watchChanges(
  store: ChangeFeedStore,
  /** Re-evaluated for every read, so a policy reload reaches open streams (and may end them). */
  filter: () => ChangeFilter,
  from: number | undefined,
  signal: AbortSignal,
  settings: WatchSettings = DEFAULT_WATCH_SETTINGS,
): AsyncGenerator<WatchItem> {
  let wake: (() => void) | undefined;
  let pending = false;
  const unsubscribe = await store.subscribe(() => {
    pending = true;
    wake?.();
  });
  try {
    let cursor: number;
    if (from === undefined) {
      cursor = await store.latest();
      yield { cursor };
    } else {
      const [horizon, latest] = await Promise.all([store.horizon(), store.latest()]);
      if (from < horizon) throw cursorExpired(horizon);
      if (from > latest) {
        throw new BrokerError("invalid_argument", "cursor: is ahead of this broker's change feed (from another deployment?)", {
          fieldViolations: [{ field: "cursor", description: "not a position this change feed has reached" }],
        });
      }
      cursor = from;
    }
    let lastSent = Date.now();
    while (!signal.aborted) {
      pending = false;
      const page = await store.after({ ...filter(), after: cursor, limit: settings.batchSize });
      // Retention overtook this reader: what it purged can no longer be delivered.
      if (cursor < page.horizon) throw cursorExpired(page.horizon);
      for (const change of page.changes) {
        cursor = change.cursor;
        lastSent = Date.now();
        yield { change, cursor };
        if (signal.aborted) return;
      }
      const scanned = Math.max(cursor, page.scannedThrough);
      if (page.changes.length >= settings.batchSize) continue;
      if (Date.now() - lastSent >= settings.heartbeatMs) {
        cursor = scanned;
        lastSent = Date.now();
        yield { cursor };
      } else {
        // Filtered-out changes are skipped for good: the next read starts after them.
        cursor = scanned;
      }
      if (pending) continue;
      const waitMs = Math.min(settings.pollMs, Math.max(1, settings.heartbeatMs - (Date.now() - lastSent)));
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        signal.addEventListener("abort", done, { once: true });
        wake = done;
      });
    }
  } finally {
    unsubscribe();
  }
}
