/**
 * Reading the audit trail: filtered, oldest first, keyset-paginated on `sequence` (the chain order,
 * gap-free and increasing), for `AuditService.ListAuditEvents` and the JSON-lines export. A
 * keyset page is one short query, so a long export holds no transaction or cursor open and sees
 * events appended while it runs.
 */
import type postgres from "postgres";
import { toBrokerError } from "./database.js";
import type { AuditEventFilter, AuditTrailReader, RecordedAuditEvent } from "../domain/ports.js";
import { AUDIT_EVENT_COLUMNS, type AuditEventRow } from "./audit-hash.js";

function equals(sql: postgres.Sql, column: string, value: string | undefined): postgres.Fragment {
  return value ? sql`and ${sql(column)} = ${value}` : sql``;
}

/** Up to `limit` events after `afterSequence` (0: from the oldest) that match `filter`, oldest first. */
export async function listAuditEvents(
  sql: postgres.Sql,
  filter: AuditEventFilter,
  page: { readonly afterSequence: bigint; readonly limit: number },
): Promise<AuditEventRow[]> {
  try {
    return await sql<AuditEventRow[]>`
      select ${sql.unsafe(AUDIT_EVENT_COLUMNS)} from audit_events
       where sequence > ${page.afterSequence.toString()}::bigint
         ${filter.startTime ? sql`and time >= ${filter.startTime}` : sql``}
         ${filter.endTime ? sql`and time < ${filter.endTime}` : sql``}
         ${equals(sql, "user_id", filter.userId)}
         ${equals(sql, "caller", filter.caller)}
         ${equals(sql, "integration_id", filter.integrationId)}
         ${equals(sql, "action", filter.action)}
         ${equals(sql, "outcome", filter.outcome)}
       order by audit_events.sequence
       limit ${page.limit}`;
  } catch (error) {
    throw toBrokerError(error, "list audit events");
  }
}

/** Every matching event, oldest first, read `batchSize` at a time. */
export async function* streamAuditEvents(
  sql: postgres.Sql,
  filter: AuditEventFilter,
  options: { readonly batchSize?: number | undefined; readonly afterSequence?: bigint | undefined } = {},
): AsyncGenerator<AuditEventRow> {
  const batchSize = Math.max(1, options.batchSize ?? 1_000);
  let after = options.afterSequence ?? 0n;
  for (;;) {
    const rows = await listAuditEvents(sql, filter, { afterSequence: after, limit: batchSize });
    yield* rows;
    const last = rows.at(-1);
    if (last === undefined || rows.length < batchSize) return;
    after = BigInt(last.sequence);
  }
}

function recordedEvent(row: AuditEventRow): RecordedAuditEvent {
  return {
    sequence: BigInt(row.sequence),
    time: row.time,
    action: row.action,
    outcome: row.outcome,
    reason: row.reason,
    caller: row.caller,
    callerKind: row.caller_kind,
    userId: row.user_id,
    integrationId: row.integration_id,
    provider: row.provider,
    requestId: row.request_id,
    peer: row.peer,
    scopes: row.scopes,
    details: row.details,
    hash: row.hash,
    previousHash: row.previous_hash,
  };
}

/** The audit-trail port of the domain over this database. */
export function createAuditTrailReader(sql: postgres.Sql): AuditTrailReader {
  return {
    async list(filter, page) {
      return (await listAuditEvents(sql, filter, page)).map(recordedEvent);
    },
  };
}
