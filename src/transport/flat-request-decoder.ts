/**
 * A decoder for request messages made only of plain strings, repeated strings and durations
 * (GetAccessTokenRequest, every warm call's message). protobuf-es decodes through its reflection
 * layer: a zero message built field by field, a reader object and a descriptor lookup per field,
 * about a tenth of what the broker spends on a warm call beyond a bare echo server
 * (bench/warm-path.ts). This one walks the bytes once against a table made from the same
 * descriptor and copies a zero message made once.
 *
 * It only answers for the ordinary request: well-formed, ASCII text, every field once (repeated
 * strings aside), nothing it does not know, no list over its item limit. Anything else — unknown
 * fields, other wire types, non-ASCII text, a duration given twice, a negative or huge number,
 * truncated bytes — gets `undefined`, and protobuf-es decides (grpc-adapter.ts), so every
 * answer is the message `fromBinary` would give and every refusal is the one it gives.
 */
import { create, ScalarType, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { DurationSchema, FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import { fieldLimitOf } from "./request-limits.js";

const LENGTH_DELIMITED = 2;

interface FieldPlan {
  readonly kind: "string" | "strings" | "duration";
  readonly localName: string;
  readonly maxItems: number;
}

function planOf(field: DescField): FieldPlan | undefined {
  if (field.oneof !== undefined) return undefined;
  const maxItems = fieldLimitOf(field).maxItems;
  if (field.fieldKind === "scalar" && field.scalar === ScalarType.STRING && field.presence === FeatureSet_FieldPresence.IMPLICIT) return { kind: "string", localName: field.localName, maxItems };
  if (field.fieldKind === "list" && field.listKind === "scalar" && field.scalar === ScalarType.STRING) return { kind: "strings", localName: field.localName, maxItems };
  if (field.fieldKind === "message" && field.message.typeName === DurationSchema.typeName && !field.delimitedEncoding) {
    return { kind: "duration", localName: field.localName, maxItems };
  }
  return undefined;
}

/** Reads varints off a byte range; -1 stands for anything this decoder leaves to protobuf-es. */
class Cursor {
  constructor(
    readonly bytes: Buffer,
    public pos: number,
  ) {}

  /** An unsigned varint of at most `maxBytes` bytes (7 bits each; 7 bytes stay exact in a double). */
  varint(end: number, maxBytes: number): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < maxBytes; i++) {
      if (this.pos >= end) return -1;
      const byte = this.bytes[this.pos++] as number;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    return -1;
  }
}

/** Printable and control ASCII only, so Latin-1 and UTF-8 read it alike. */
function asciiText(bytes: Buffer, start: number, end: number): string | undefined {
  for (let i = start; i < end; i++) if ((bytes[i] as number) >= 0x80) return undefined;
  return bytes.toString("latin1", start, end);
}

const ZERO_DURATION = create(DurationSchema);
const INT32_MAX = 0x7fffffff;

function readDuration(cursor: Cursor, end: number): Message | undefined {
  const duration: Record<string, unknown> = { ...ZERO_DURATION };
  while (cursor.pos < end) {
    const tag = cursor.varint(end, 5);
    if (tag === 8) {
      // Negative seconds take ten bytes; seven hold every value below 2^49 s.
      const seconds = cursor.varint(end, 7);
      if (seconds < 0) return undefined;
      duration["seconds"] = BigInt(seconds);
    } else if (tag === 16) {
      const nanos = cursor.varint(end, 5);
      if (nanos < 0 || nanos > INT32_MAX) return undefined;
      duration["nanos"] = nanos;
    } else {
      return undefined;
    }
  }
  return cursor.pos === end ? (duration as unknown as Message) : undefined;
}

/**
 * The decoder for `schema`, or undefined when one of its fields is of a kind this decoder does
 * not handle (then every message of it goes to protobuf-es).
 */
export function flatDecoderFor(schema: DescMessage): ((bytes: Buffer) => Message | undefined) | undefined {
  const plans: Array<FieldPlan | undefined> = [];
  for (const field of schema.fields) {
    const plan = planOf(field);
    if (plan === undefined || field.number > 15) return undefined;
    plans[field.number] = plan;
  }
  const lists = schema.fields.filter((field) => field.fieldKind === "list").map((field) => field.localName);
  const zero = create(schema);

  return (bytes) => {
    const message: Record<string, unknown> = { ...zero };
    for (const name of lists) message[name] = [];
    const cursor = new Cursor(bytes, 0);
    const end = bytes.length;
    while (cursor.pos < end) {
      // Field numbers up to 15 fit a one-byte tag.
      const tag = cursor.varint(end, 1);
      if (tag < 0 || (tag & 7) !== LENGTH_DELIMITED) return undefined;
      const plan = plans[tag >>> 3];
      const length = cursor.varint(end, 5);
      if (plan === undefined || length < 0 || cursor.pos + length > end) return undefined;
      const start = cursor.pos;
      const stop = start + length;
      if (plan.kind === "duration") {
        if (message[plan.localName] !== undefined) return undefined;
        const duration = readDuration(cursor, stop);
        if (duration === undefined) return undefined;
        message[plan.localName] = duration;
      } else {
        const text = asciiText(bytes, start, stop);
        if (text === undefined) return undefined;
        if (plan.kind === "string") {
          message[plan.localName] = text;
        } else {
          const items = message[plan.localName] as string[];
          if (items.push(text) > plan.maxItems) return undefined;
        }
      }
      cursor.pos = stop;
    }
    return message as unknown as Message;
  };
}
