/**
 * Retention of the audit trail: events older than the configured period are deleted, oldest
 * first, in batches. Each batch deletes a prefix of the chain and, in the same transaction, moves
 * `audit_anchor` to the sequence and hash of the last deleted event, so what remains still verifies
 * from the anchor (audit-chain.ts). Only a prefix is ever deleted: an old event that follows a
 * newer one (replica clocks differ) waits until the events before it are due too.
 *
 * A batch is checked before it is deleted — it must link to the anchor and match its hashes —
 * so retention never erases the evidence of tampering: on a broken chain it stops and logs.
 * The SQL lives in storage/audit-retention-store.ts.
 */
import { systemClock, type Clock, epochMs } from "../domain/ports.js";
import type { Logger } from "../observability/logger.js";
import type { AuditRetentionStore } from "../storage/audit-retention-store.js";
import { startPeriodicJob, type PeriodicJob } from "./periodic.js";

export interface PurgeAuditEventsOptions {
  readonly store: AuditRetentionStore;
  /** Events strictly older than this are deleted. */
  readonly olderThan: Date;
  readonly batchSize?: number | undefined;
  readonly logger: Logger;
  /** Stops between batches; what is deleted stays deleted. */
  readonly signal?: AbortSignal | undefined;
}

export interface PurgeAuditEventsResult {
  readonly deleted: number;
  /** The anchor after the purge, when there is one. */
  readonly anchor?: { readonly sequence: number; readonly hash: string };
  /** Set when a batch did not verify and nothing more was deleted. */
  readonly problem?: string;
}

/** Deletes events older than `olderThan` in batches, moving the anchor with each batch. */
export async function purgeAuditEvents(options: PurgeAuditEventsOptions): Promise<PurgeAuditEventsResult> {
  const batchSize = Math.max(1, options.batchSize ?? 1_000);
  let deleted = 0;
  let anchor: PurgeAuditEventsResult["anchor"];
  for (;;) {
    if (options.signal?.aborted) break;
    const batch = await options.store.purgeBatch(options.olderThan, batchSize);
    deleted += batch.deleted;
    anchor = batch.anchor ?? anchor;
    if (batch.problem !== undefined) {
      options.logger.error({ problem: batch.problem, deleted }, "audit retention stopped: the audit chain does not verify");
      return { deleted, anchor, problem: batch.problem };
    }
    if (!batch.full) break;
  }
  if (deleted > 0) options.logger.info({ deleted, anchor: anchor?.sequence }, "old audit events deleted");
  return anchor === undefined ? { deleted } : { deleted, anchor };
}

export type AuditRetentionJob = PeriodicJob<PurgeAuditEventsResult>;

/**
 * Purges events older than `retentionDays` now and every `intervalMs`. Replicas take turns
 * through an advisory lock; 0 days keeps every event (the job then does nothing).
 */
export function startAuditRetentionJob(options: {
  store: AuditRetentionStore;
  retentionDays: number;
  intervalMs: number;
  logger: Logger;
  batchSize?: number | undefined;
  clock?: Clock | undefined;
}): AuditRetentionJob {
  const clock = options.clock ?? systemClock;
  return startPeriodicJob({
    name: "audit retention",
    intervalMs: options.intervalMs,
    logger: options.logger,
    enabled: options.retentionDays > 0,
    run: async (signal) => {
      if (options.retentionDays <= 0) return { deleted: 0 };
      return purgeAuditEvents({
        store: options.store,
        olderThan: new Date(epochMs(clock) - options.retentionDays * 86_400_000),
        batchSize: options.batchSize,
        logger: options.logger,
        signal,
      });
    },
  });
}
