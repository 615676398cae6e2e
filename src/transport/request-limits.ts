/**
 * The maximum of every string and repeated field of every request message, checked at the edge
 * (interceptors/request-edge.ts) before any handler sees the request, whichever listener it
 * came through. One table keyed by proto field name: a name means the same thing in every
 * message (`user_id` is always a user id). A field the table does not name gets the defaults,
 * so a field added to the proto is bounded from the start. README "Request limits and refusals"
 * lists the same table; test/unit/request-limits.test.ts holds the two together.
 */
import { ScalarType, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { BrokerError, type FieldViolation } from "../domain/errors.js";

export interface FieldLimit {
  /** For a string field, or each element of a repeated string field: at most this many characters. */
  readonly maxLength: number;
  /** For a repeated field: at most this many elements. */
  readonly maxItems: number;
}

/** For every string or repeated field the table below does not name. */
export const DEFAULT_FIELD_LIMIT: FieldLimit = { maxLength: 256, maxItems: 64 };

/** Field name → limit. Ids are UUIDs or provider ids; user ids come from a caller's directory. */
export const FIELD_LIMITS: Readonly<Record<string, Partial<FieldLimit>>> = {
  id: { maxLength: 128 },
  integration_id: { maxLength: 128 },
  external_account_id: { maxLength: 128 },
  user_id: { maxLength: 256 },
  provider: { maxLength: 64 },
  scopes: { maxLength: 256, maxItems: 64 },
  return_to: { maxLength: 2048 },
  // OAuth callback parameters (CompleteAuthorization): providers' codes are opaque and can be long.
  state: { maxLength: 512 },
  code: { maxLength: 4096 },
  iss: { maxLength: 2048 },
  error: { maxLength: 256 },
  error_description: { maxLength: 1024 },
  page_token: { maxLength: 512 },
  cursor: { maxLength: 512 },
  caller: { maxLength: 256 },
  action: { maxLength: 128 },
  outcome: { maxLength: 64 },
};

const MERGED_LIMITS: ReadonlyMap<string, FieldLimit> = new Map(
  Object.entries(FIELD_LIMITS).map(([name, limit]) => [name, { ...DEFAULT_FIELD_LIMIT, ...limit }]),
);

export function fieldLimitOf(field: Pick<DescField, "name">): FieldLimit {
  return MERGED_LIMITS.get(field.name) ?? DEFAULT_FIELD_LIMIT;
}

/** The value of `field` in `message`, looking inside its oneof when it belongs to one. */
function valueOf(message: Record<string, unknown>, field: DescField): unknown {
  if (field.oneof === undefined) return message[field.localName];
  const selected = message[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
  return selected?.case === field.localName ? selected.value : undefined;
}

/** Nested request messages are well-known types (Duration, Timestamp); deeper is never legitimate. */
const MAX_DEPTH = 4;

/**
 * Every field of `message` over its limit, in field order. Lengths are JavaScript string
 * lengths (UTF-16 code units), which is what the broker stores and logs.
 */
export function requestLimitViolations(schema: DescMessage, message: Message, prefix = "", depth = 0): FieldViolation[] {
  const violations: FieldViolation[] = [];
  const values = message as unknown as Record<string, unknown>;
  for (const field of schema.fields) {
    const value = valueOf(values, field);
    const path = `${prefix}${field.name}`;
    const limit = fieldLimitOf(field);
    if (field.fieldKind === "list") {
      const items = value as readonly unknown[];
      if (items.length > limit.maxItems) {
        violations.push({ field: path, description: `at most ${limit.maxItems} items (got ${items.length})` });
        continue;
      }
      items.forEach((item, index) => {
        if (field.listKind === "scalar" && field.scalar === ScalarType.STRING) {
          pushLengthViolation(violations, `${path}[${index}]`, item as string, limit);
        } else if (field.listKind === "message" && depth < MAX_DEPTH) {
          violations.push(...requestLimitViolations(field.message, item as Message, `${path}[${index}].`, depth + 1));
        }
      });
    } else if (field.fieldKind === "map") {
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length > limit.maxItems) violations.push({ field: path, description: `at most ${limit.maxItems} entries (got ${entries.length})` });
      else for (const [key, entry] of entries) {
        pushLengthViolation(violations, `${path}[key]`, key, limit);
        if (typeof entry === "string") pushLengthViolation(violations, `${path}[${key.slice(0, 64)}]`, entry, limit);
      }
    } else if (field.fieldKind === "scalar" && field.scalar === ScalarType.STRING && typeof value === "string") {
      pushLengthViolation(violations, path, value as string, limit);
    } else if (field.fieldKind === "message" && value !== undefined && depth < MAX_DEPTH) {
      violations.push(...requestLimitViolations(field.message, value as Message, `${path}.`, depth + 1));
    }
  }
  return violations;
}

const limitChecks = new WeakMap<DescMessage, (message: Message) => boolean>();

/**
 * True when no field of `message` is over its limit: the walk above, made once per schema from
 * its descriptor, without building a path or a list. Nearly every request passes, and the walk
 * cost a warm GetAccessToken more than its rate limiting did. False means "walk it", also for
 * fields it does not look into (maps, lists of messages, oneofs).
 */
export function withinLimits(schema: DescMessage, message: Message): boolean {
  let check = limitChecks.get(schema);
  if (check === undefined) {
    check = compileLimitCheck(schema, 0);
    limitChecks.set(schema, check);
  }
  return check(message);
}

function compileLimitCheck(schema: DescMessage, depth: number): (message: Message) => boolean {
  const checks = schema.fields.map((field): ((values: Record<string, unknown>) => boolean) => {
    const { localName } = field;
    const limit = fieldLimitOf(field);
    if (field.oneof !== undefined || field.fieldKind === "map") return () => false;
    if (field.fieldKind === "list") {
      if (field.listKind === "message") return () => false;
      const isString = field.listKind === "scalar" && field.scalar === ScalarType.STRING;
      return (values) => {
        const items = values[localName] as readonly unknown[];
        if (items.length > limit.maxItems) return false;
        if (isString) for (const item of items) if ((item as string).length > limit.maxLength) return false;
        return true;
      };
    }
    if (field.fieldKind === "scalar" && field.scalar === ScalarType.STRING) {
      return (values) => {
        const value = values[localName];
        return typeof value !== "string" || value.length <= limit.maxLength;
      };
    }
    if (field.fieldKind === "message") {
      if (depth >= MAX_DEPTH) return () => true;
      const nested = compileLimitCheck(field.message, depth + 1);
      return (values) => values[localName] === undefined || nested(values[localName] as Message);
    }
    return () => true;
  });
  return (message) => {
    const values = message as unknown as Record<string, unknown>;
    for (const check of checks) if (!check(values)) return false;
    return true;
  };
}

function pushLengthViolation(violations: FieldViolation[], path: string, value: string, limit: FieldLimit): void {
  if (value.length > limit.maxLength) {
    violations.push({ field: path, description: `at most ${limit.maxLength} characters (got ${value.length})` });
  }
}

/** INVALID_ARGUMENT for a request with fields over their limits (error-mapping.ts caps the list). */
export function fieldLimitError(violations: readonly FieldViolation[]): BrokerError {
  const first = violations[0];
  const message =
    violations.length === 1 && first
      ? `${first.field}: ${first.description}`
      : `${violations.length} fields are over their limits (see README "Request limits and refusals"); first: ${first?.field ?? ""}: ${first?.description ?? ""}`;
  return new BrokerError("invalid_argument", message, { reason: "FIELD_LIMIT_EXCEEDED", fieldViolations: violations });
}

/**
 * The repeated fields of a binary-encoded `schema` message that hold more items than allowed,
 * counted from the wire without decoding a value: 10,000 scopes are refused for the price of
 * skipping over them, not of building 10,000 strings. Throws on bytes that are not a message.
 */
export function wireCountViolations(schema: DescMessage, bytes: Uint8Array): FieldViolation[] {
  const reader = new BinaryReader(bytes);
  const counts = new Map<number, number>();
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    counts.set(fieldNo, (counts.get(fieldNo) ?? 0) + 1);
    reader.skip(wireType, fieldNo);
  }
  const violations: FieldViolation[] = [];
  for (const field of schema.fields) {
    const count = counts.get(field.number) ?? 0;
    const limit = fieldLimitOf(field);
    // A packed scalar list is one occurrence; its items are counted once decoded.
    if (field.fieldKind === "list" && count > limit.maxItems) {
      violations.push({ field: field.name, description: `at most ${limit.maxItems} items (got ${count})` });
    }
  }
  return violations;
}
