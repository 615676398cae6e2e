/**
 * AuditService: the audit trail for operators, oldest first. Who may call it is the
 * authorization interceptor's business; this file maps the request to a filter and a keyset page
 * of the trail (`AuditTrailReader`, storage/audit-query.ts) and the events back to `AuditEvent`s,
 * hashes included so a reader can check the chain. Page tokens: transport/page-token.ts, the
 * position being the last sequence returned.
 */
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { invalidArgument } from "../../domain/errors.js";
import type { AuditEventFilter, AuditOutcome, AuditTrailReader, RecordedAuditEvent } from "../../domain/ports.js";
import type { AuditService, ListAuditEventsRequest } from "../../gen/oauthbroker/v1/audit_service_pb.js";
import { pageTokenCodec } from "../page-token.js";

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

/** The filters a page token belongs to, in a fixed order. */
function canonicalFilter(filter: AuditEventFilter): readonly string[] {
  return [
    filter.startTime?.toISOString() ?? "",
    filter.endTime?.toISOString() ?? "",
    filter.userId ?? "",
    filter.caller ?? "",
    filter.integrationId ?? "",
    filter.action ?? "",
    filter.outcome ?? "",
  ];
}

const pageTokens = pageTokenCodec<bigint>({
  fieldsOf: (lastSequence) => ({ s: lastSequence.toString() }),
  positionOf: (fields) => {
    const sequence = fields["s"];
    if (typeof sequence !== "string" || !/^[0-9]{1,19}$/.test(sequence) || typeof fields["f"] !== "string") return undefined;
    return BigInt(sequence);
  },
  notIssued: "is not a token returned by ListAuditEvents; omit it to start from the first page",
  otherFilters: "belongs to a request with different filters; repeat the filters of the first page or omit the token",
});

function toAuditEvent(event: RecordedAuditEvent) {
  return { ...event, time: timestampFromDate(event.time), scopes: [...event.scopes], details: { ...event.details } };
}

export function createAuditServiceHandlers(deps: { auditTrail: AuditTrailReader }): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(request) {
      const pageSize = pageSizeOf(request.pageSize);
      const filter = filterOf(request);
      const afterSequence = request.pageToken === "" ? 0n : pageTokens.decode(request.pageToken, canonicalFilter(filter));
      const events = await deps.auditTrail.list(filter, { afterSequence, limit: pageSize + 1 });
      const page = events.slice(0, pageSize);
      const last = page.at(-1);
      return {
        events: page.map(toAuditEvent),
        nextPageToken: events.length > pageSize && last ? pageTokens.encode(last.sequence, canonicalFilter(filter)) : "",
      };
    },
  };
}
