/**
 * The audit trail as JSON lines, for SIEM ingestion: one object per event, oldest first, with
 * both hashes, so the receiving side can re-check the chain (audit-hash.ts defines the canonical
 * form) and holds a copy the broker's database users cannot rewrite.
 */
import type postgres from "postgres";
import type { AuditEventRow } from "./audit-hash.js";
import { streamAuditEvents } from "./audit-query.js";

/** One exported event. Field names follow the `audit_events` columns. */
export type AuditEventJson = Omit<AuditEventRow, "sequence" | "time"> & {
  readonly sequence: number;
  /** ISO 8601. */
  readonly time: string;
};

export function auditEventJson(row: AuditEventRow): AuditEventJson {
  return {
    sequence: Number(row.sequence),
    time: row.time.toISOString(),
    action: row.action,
    outcome: row.outcome,
    reason: row.reason,
    caller: row.caller,
    caller_kind: row.caller_kind,
    user_id: row.user_id,
    integration_id: row.integration_id,
    provider: row.provider,
    request_id: row.request_id,
    peer: row.peer,
    scopes: row.scopes,
    details: row.details,
    previous_hash: row.previous_hash,
    hash: row.hash,
  };
}

/**
 * Writes every event with `since <= time < until` as a JSON line through `writeLine`, which
 * resolves when the line was accepted (backpressure). Returns the number of events written.
 */
export async function exportAuditEvents(options: {
  readonly sql: postgres.Sql;
  readonly since?: Date | undefined;
  readonly until?: Date | undefined;
  readonly batchSize?: number | undefined;
  readonly writeLine: (line: string) => Promise<void>;
}): Promise<number> {
  let written = 0;
  const events = streamAuditEvents(
    options.sql,
    { startTime: options.since, endTime: options.until },
    { batchSize: options.batchSize },
  );
  for await (const row of events) {
    await options.writeLine(`${JSON.stringify(auditEventJson(row))}\n`);
    written += 1;
  }
  return written;
}
