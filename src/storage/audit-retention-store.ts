/**
 * The SQL of audit retention (jobs/audit-retention.ts): one batch deletes a verified prefix of the
 * chain and moves `audit_anchor` to its last event, in one transaction, so what remains still
 * verifies from the anchor (audit-chain.ts). Replicas take turns through an advisory lock.
 */
import type postgres from "postgres";
import { readAuditAnchor, GENESIS } from "./audit-chain.js";
import { AUDIT_EVENT_COLUMNS, auditEventHash, type AuditEventRow } from "./audit-hash.js";

/** Key of the advisory lock that keeps two replicas from purging at once ("oaauret1"). */
export const AUDIT_RETENTION_LOCK_KEY = "8025803168009253937";

export interface AuditPurgeBatch {
  readonly deleted: number;
  /** The batch was as large as asked: more may be due. */
  readonly full: boolean;
  readonly anchor?: { readonly sequence: number; readonly hash: string };
  /** Set when the batch did not verify; nothing was deleted. */
  readonly problem?: string;
}

export interface AuditRetentionStore {
  /** Deletes up to `batchSize` of the oldest events, all strictly older than `olderThan`, once they verify. */
  purgeBatch(olderThan: Date, batchSize: number): Promise<AuditPurgeBatch>;
}

export function createAuditRetentionStore(sql: postgres.Sql): AuditRetentionStore {
  return {
    purgeBatch: (olderThan, batchSize) => sql.begin((tx) => purgeBatch(tx, olderThan, batchSize)),
  };
}

async function purgeBatch(tx: postgres.TransactionSql, olderThan: Date, batchSize: number): Promise<AuditPurgeBatch> {
  await tx`select pg_advisory_xact_lock(${AUDIT_RETENTION_LOCK_KEY}::bigint)`;
  const rows = await tx<AuditEventRow[]>`
    select ${tx.unsafe(AUDIT_EVENT_COLUMNS)} from audit_events order by audit_events.sequence limit ${batchSize}`;
  // Only a prefix is ever deleted: an old event after a newer one (replica clocks differ) waits.
  const due: AuditEventRow[] = [];
  for (const row of rows) {
    if (row.time.getTime() >= olderThan.getTime()) break;
    due.push(row);
  }
  const last = due.at(-1);
  if (last === undefined) return { deleted: 0, full: false };

  // Checked before deleting, so retention never erases the evidence of tampering.
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
