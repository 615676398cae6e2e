/**
 * AuditService: the audit trail for operators, oldest first. Who may call it is the
 * authorization interceptor's business; this file maps the request to a filtered keyset query and
 * the rows back to `AuditEvent`s, hashes included so a reader can check the chain.
 *
 * Page tokens are opaque (AIP-158): base64url of the last sequence returned and a fingerprint of
 * the filters, so a token replayed with other filters is refused instead of silently skipping.
 */
import { createHash } from "node:crypto";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type postgres from "postgres";
import { invalidArgument } from "../../domain/errors.js";
import type { AuditOutcome } from "../../domain/ports.js";
import type { AuditService, ListAuditEventsRequest } from "../../gen/oauthbroker/v1/audit_service_pb.js";
import type { AuditEventRow } from "../../storage/audit-hash.js";
import { listAuditEvents, type AuditEventFilter } from "../../storage/audit-query.js";

export const DEFAULT_AUDIT_PAGE_SIZE = 100;
export const MAX_AUDIT_PAGE_SIZE = 1_000;

const OUTCOMES: readonly AuditOutcome[] = ["success", "failure", "denied"];

function dateOf(timestamp: Timestamp | undefined): Date | undefined {
  return timestamp === undefined ? undefined : timestampDate(timestamp);
}

function filterOf(request: ListAuditEventsRequest): AuditEventFilter {
  if (request.outcome !== "" && !(OUTCOMES as readonly string[]).includes(request.outcome)) {
    throw invalidArgument("outcome", `must be empty or one of ${OUTCOMES.join(", ")}`);
  }
  const filter: AuditEventFilter = {
    startTime: dateOf(request.startTime),
    endTime: dateOf(request.endTime),
    userId: request.userId,
    caller: request.caller,
    integrationId: request.integrationId,
    action: request.action,
    outcome: request.outcome,
  };
  if (filter.startTime && filter.endTime && filter.endTime.getTime() <= filter.startTime.getTime()) {
    throw invalidArgument("end_time", "must be after start_time");
  }
  return filter;
}

function pageSizeOf(requested: number): number {
  if (requested === 0) return DEFAULT_AUDIT_PAGE_SIZE;
  if (requested < 1 || requested > MAX_AUDIT_PAGE_SIZE) {
    throw invalidArgument("page_size", `must be between 1 and ${MAX_AUDIT_PAGE_SIZE} (0 means ${DEFAULT_AUDIT_PAGE_SIZE})`);
  }
  return requested;
}

/** A short digest of the filters a page token belongs to; page size may change between pages. */
function fingerprint(filter: AuditEventFilter): string {
  const canonical = JSON.stringify([
    filter.startTime?.toISOString() ?? "",
    filter.endTime?.toISOString() ?? "",
    filter.userId ?? "",
    filter.caller ?? "",
    filter.integrationId ?? "",
    filter.action ?? "",
    filter.outcome ?? "",
  ]);
  return createHash("sha256").update(canonical).digest("base64url").slice(0, 16);
}

export function encodeAuditPageToken(lastSequence: bigint, filter: AuditEventFilter): string {
  return Buffer.from(JSON.stringify({ s: lastSequence.toString(), f: fingerprint(filter) })).toString("base64url");
}

/** The sequence to continue after; `invalid_argument` on `page_token` for anything else. */
export function decodeAuditPageToken(token: string, filter: AuditEventFilter): bigint {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  const fields = typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
  const sequence = fields["s"];
  if (typeof sequence !== "string" || !/^[0-9]{1,19}$/.test(sequence) || typeof fields["f"] !== "string") {
    throw invalidArgument("page_token", "is not a token returned by ListAuditEvents; omit it to start from the first page");
  }
  if (fields["f"] !== fingerprint(filter)) {
    throw invalidArgument("page_token", "belongs to a request with different filters; repeat the filters of the first page or omit the token");
  }
  return BigInt(sequence);
}

function toAuditEvent(row: AuditEventRow) {
  return {
    sequence: BigInt(row.sequence),
    time: timestampFromDate(row.time),
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
    scopes: [...row.scopes],
    details: { ...row.details },
    hash: row.hash,
    previousHash: row.previous_hash,
  };
}

export function createAuditServiceHandlers(deps: { sql: postgres.Sql }): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(request) {
      const pageSize = pageSizeOf(request.pageSize);
      const filter = filterOf(request);
      const afterSequence = request.pageToken === "" ? 0n : decodeAuditPageToken(request.pageToken, filter);
      const rows = await listAuditEvents(deps.sql, filter, { afterSequence, limit: pageSize + 1 });
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      return {
        events: page.map(toAuditEvent),
        nextPageToken: rows.length > pageSize && last ? encodeAuditPageToken(BigInt(last.sequence), filter) : "",
      };
    },
  };
}
