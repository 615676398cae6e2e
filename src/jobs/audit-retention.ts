/**
 * Retention of the audit trail: events older than the configured period are deleted, oldest
 * first, in batches. Each batch deletes a prefix of the chain and, in the same transaction, moves
 * `audit_anchor` to the sequence and hash of the last deleted event, so what remains still verifies
 * from the anchor (audit-chain.ts). Only a prefix is ever deleted: an old event that follows a
 * newer one (replica clocks differ) waits until the events before it are due too.
 *
 * A batch is checked before it is deleted — it must link to the anchor and match its hashes —
 * so retention never erases the evidence of tampering: on a broken chain it stops and logs.
 */
import type postgres from "postgres";
import { systemClock, type Clock } from "../domain/ports.js";
import type { Logger } from "../observability/logger.js";
import { startPeriodicJob, type PeriodicJob } from "./periodic.js";
import { readAuditAnchor, GENESIS } from "../storage/audit-chain.js";
import { AUDIT_EVENT_COLUMNS, auditEventHash, type AuditEventRow } from "../storage/audit-hash.js";

/** Key of the advisory lock that keeps two replicas from purging at once ("oaauret1"). */
export const AUDIT_RETENTION_LOCK_KEY = "8025803168009253937";

export interface PurgeAuditEventsOptions {
  readonly sql: postgres.Sql;
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

type BatchResult = { deleted: number; full: boolean; anchor?: { sequence: number; hash: string }; problem?: string };

async function purgeBatch(tx: postgres.TransactionSql, olderThan: Date, batchSize: number): Promise<BatchResult> {
  await tx`select pg_advisory_xact_lock(${AUDIT_RETENTION_LOCK_KEY}::bigint)`;
  const rows = await tx<AuditEventRow[]>`
    select ${tx.unsafe(AUDIT_EVENT_COLUMNS)} from audit_events order by audit_events.sequence limit ${batchSize}`;
  const due: AuditEventRow[] = [];
  for (const row of rows) {
    if (row.time.getTime() >= olderThan.getTime()) break;
    due.push(row);
  }
  const last = due.at(-1);
  if (last === undefined) return { deleted: 0, full: false };

  let previous = (await readAuditAnchor(tx)) ?? GENESIS;
  for (const row of due) {
    const sequence = BigInt(row.sequence);
    if (sequence !== previous.sequence + 1n || row.previous_hash !== previous.hash || auditEventHash(row.previous_hash, row) !== row.hash) {
      return { deleted: 0, full: false, problem: `event ${sequence} does not verify; retention stopped so the evidence stays` };
    }
    previous = { sequence, hash: row.hash };
  }

  const deleted = await tx`delete from audit_events where sequence <= ${last.sequence}::bigint`;
  await tx`
    insert into audit_anchor (id, sequence, hash) values (true, ${last.sequence}::bigint, ${last.hash})
    on conflict (id) do update set sequence = excluded.sequence, hash = excluded.hash
     where audit_anchor.sequence < excluded.sequence`;
  return {
    deleted: deleted.count,
    full: due.length === batchSize,
    anchor: { sequence: Number(last.sequence), hash: last.hash },
  };
}

/** Deletes events older than `olderThan` in batches, moving the anchor with each batch. */
export async function purgeAuditEvents(options: PurgeAuditEventsOptions): Promise<PurgeAuditEventsResult> {
  const batchSize = Math.max(1, options.batchSize ?? 1_000);
  let deleted = 0;
  let anchor: PurgeAuditEventsResult["anchor"];
  for (;;) {
    if (options.signal?.aborted) break;
    const batch = await options.sql.begin((tx) => purgeBatch(tx, options.olderThan, batchSize));
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
  sql: postgres.Sql;
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
        sql: options.sql,
        olderThan: new Date(clock.now().getTime() - options.retentionDays * 86_400_000),
        batchSize: options.batchSize,
        logger: options.logger,
        signal,
      });
    },
  });
}
