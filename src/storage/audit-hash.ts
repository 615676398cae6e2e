/**
 * The hash chain of the audit trail. Each event's `hash` is the hex SHA-256 of the previous
 * event's hash followed by the event's canonical form, so changing, removing or reordering a
 * stored event breaks the chain from that point on. The canonical form is fixed here and nowhere
 * else: the writer (audit-log.ts), the verifier (audit-chain.ts) and anyone re-checking an export
 * must produce the same bytes for the same event.
 */
import { hash } from "node:crypto";

/** `previous_hash` of the first event ever written (no anchor yet). */
export const GENESIS_HASH = "0".repeat(64);

/** Tags the canonical form, so a future change of the form can be told apart from tampering. */
const CANONICAL_VERSION = "audit.v1";

/** A stored audit event (`audit_events`), as read with `sequence::text`. */
export interface AuditEventRow {
  readonly sequence: string;
  readonly time: Date;
  readonly action: string;
  readonly outcome: string;
  readonly reason: string;
  readonly caller: string;
  readonly caller_kind: string;
  readonly user_id: string;
  readonly integration_id: string;
  readonly provider: string;
  readonly request_id: string;
  readonly peer: string;
  readonly scopes: readonly string[];
  readonly details: Readonly<Record<string, string>>;
  readonly previous_hash: string;
  readonly hash: string;
}

/** The hashed part of an event: everything but the two hashes. */
export type AuditEventContent = Omit<AuditEventRow, "previous_hash" | "hash">;

/**
 * Column list for reads, in schema order; `sequence` as text so no bigint is lost in transit.
 * Order by `audit_events.sequence`: a bare `sequence` in ORDER BY names the text alias.
 */
export const AUDIT_EVENT_COLUMNS =
  "sequence::text as sequence, time, action, outcome, reason, caller, caller_kind, user_id, integration_id, " +
  "provider, request_id, peer, scopes, details, previous_hash, hash";

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Details as a JSON object with keys in code-unit order. Built by hand rather than with
 * `JSON.stringify(object)`, which enumerates integer-like keys ("10", "2") before the others
 * whatever order they were inserted in.
 */
function detailsJson(details: Readonly<Record<string, string>>): string {
  const keys = Object.keys(details).sort(byCodeUnit);
  return `{${keys.map((key) => `${JSON.stringify(key)}:${JSON.stringify(details[key] ?? "")}`).join(",")}}`;
}

/**
 * The canonical serialization of an event: a JSON array with the fields in a fixed order, the
 * time as ISO 8601 UTC with milliseconds, the scopes sorted and the details' keys sorted. JSON
 * string escaping keeps field boundaries unambiguous; the result does not depend on the order in
 * which scopes or detail keys were given.
 */
export function canonicalAuditEvent(event: AuditEventContent): string {
  const head = JSON.stringify([
    CANONICAL_VERSION,
    event.sequence,
    event.time.toISOString(),
    event.action,
    event.outcome,
    event.reason,
    event.caller,
    event.caller_kind,
    event.user_id,
    event.integration_id,
    event.provider,
    event.request_id,
    event.peer,
    [...event.scopes].sort(byCodeUnit),
  ]);
  return `${head.slice(0, -1)},${detailsJson(event.details)}]`;
}

/** Hex SHA-256 over `previousHash` followed by `canonical` (an event's canonical form). */
export function chainHash(previousHash: string, canonical: string): string {
  return hash("sha256", previousHash + canonical, "hex");
}

/** Hex SHA-256 over `previousHash` followed by the canonical form of `event`. */
export function auditEventHash(previousHash: string, event: AuditEventContent): string {
  return chainHash(previousHash, canonicalAuditEvent(event));
}
