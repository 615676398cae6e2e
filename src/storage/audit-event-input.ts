/**
 * Checks and normalizes an `AuditEventInput` before it joins a write batch. A batch is written in
 * one transaction, so a value PostgreSQL would refuse must be caught here, per event, rather than
 * failing every other event of its batch. Fields beyond `AuditEventInput` are refused: an object
 * spread into an event could otherwise carry a token into the trail.
 */
import { BrokerError } from "../domain/errors.js";
import type { AuditEventInput, AuditOutcome } from "../domain/ports.js";
import type { AuditEventContent } from "./audit-hash.js";

const OUTCOMES: ReadonlySet<string> = new Set<AuditOutcome>(["success", "failure", "denied"]);

const STRING_FIELDS = [
  "reason",
  "caller",
  "callerKind",
  "userId",
  "integrationId",
  "provider",
  "requestId",
  "peer",
] as const satisfies readonly (keyof AuditEventInput)[];

const ALLOWED_FIELDS: ReadonlySet<string> = new Set<keyof AuditEventInput>([
  "action",
  "outcome",
  "scopes",
  "details",
  ...STRING_FIELDS,
]);

/** An event ready to be sequenced and hashed: everything but `sequence`, `time` and the hashes. */
export type NormalizedAuditEvent = Omit<AuditEventContent, "sequence" | "time">;

function invalid(problem: string): BrokerError {
  return new BrokerError("internal", `invalid audit event: ${problem}`, { reason: "INVALID_AUDIT_EVENT" });
}

/** Any surrogate code unit (paired ones too: the replace in `storable` tells them apart). */
const SURROGATE_CODE_UNIT = /[\uD800-\uDFFF]/;

/**
 * PostgreSQL text cannot hold NUL, and a lone UTF-16 surrogate would be stored as U+FFFD — a
 * different string from the one hashed. Both become U+FFFD before hashing, so what is stored is
 * exactly what was hashed.
 */
function storable(value: string): string {
  // Nearly every value has neither: one scan without the Unicode-aware replace (it runs per field of every event).
  if (!value.includes("\u0000") && !SURROGATE_CODE_UNIT.test(value)) return value;
  return value.replaceAll("\u0000", "\uFFFD").replace(/\p{Cs}/gu, "\uFFFD");
}

function text(event: Readonly<Record<string, unknown>>, field: string): string {
  const value = event[field];
  if (value === undefined) return "";
  if (typeof value !== "string") throw invalid(`${field} must be a string`);
  return storable(value);
}

function scopesOf(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((scope): scope is string => typeof scope === "string")) {
    throw invalid("scopes must be an array of strings");
  }
  return value.map(storable).sort();
}

function detailsOf(value: unknown): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid("details must be an object of strings");
  const details: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== "string") throw invalid(`details.${key} must be a string`);
    details[storable(key)] = storable(entry);
  }
  return details;
}

/** Throws `BrokerError("internal")` for an event the code should never have built. */
export function normalizeAuditEvent(input: AuditEventInput): NormalizedAuditEvent {
  const event = input as unknown as Readonly<Record<string, unknown>>;
  if (typeof event !== "object" || event === null) throw invalid("not an object");
  const unknown = Object.keys(event).filter((key) => !ALLOWED_FIELDS.has(key));
  if (unknown.length > 0) throw invalid(`unknown field(s) ${unknown.sort().join(", ")}`);
  const action = text(event, "action");
  if (action === "") throw invalid("action is required");
  const outcome = text(event, "outcome");
  if (!OUTCOMES.has(outcome)) throw invalid(`outcome must be one of ${[...OUTCOMES].join(", ")}`);
  return {
    action,
    outcome,
    reason: text(event, "reason"),
    caller: text(event, "caller"),
    caller_kind: text(event, "callerKind"),
    user_id: text(event, "userId"),
    integration_id: text(event, "integrationId"),
    provider: text(event, "provider"),
    request_id: text(event, "requestId"),
    peer: text(event, "peer"),
    scopes: scopesOf(event["scopes"]),
    details: detailsOf(event["details"]),
  };
}
