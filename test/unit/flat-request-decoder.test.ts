/**
 * The flat request decoder against protobuf-es on the same bytes: whatever it answers must be
 * exactly `fromBinary`'s message, the ordinary request must be answered by it (not all handed
 * on), and everything unusual must be handed on. The limits predicate against the walk it
 * shortcuts.
 */
import { describe, expect, it } from "vitest";
import { create, fromBinary, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { GetAccessTokenRequestSchema, GetAccessTokenResponseSchema } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { ListAuditEventsRequestSchema } from "../../src/gen/oauthbroker/v1/audit_service_pb.js";
import { StartAuthorizationRequestSchema } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { flatDecoderFor } from "../../src/transport/flat-request-decoder.js";
import { requestLimitViolations, withinLimits } from "../../src/transport/request-limits.js";

const decode = flatDecoderFor(GetAccessTokenRequestSchema)!;

/** A seeded generator, so a failure names a case that can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function text(next: () => number, maxLength: number, alphabet: string): string {
  const length = Math.floor(next() * (maxLength + 1));
  let out = "";
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(next() * alphabet.length)];
  return out;
}

const ASCII = "abcXYZ019-_.:/ \t";
const WIDE = "aé€😀\u0000";

function requestBytes(next: () => number, alphabet: string): Uint8Array {
  const scopes = Array.from({ length: Math.floor(next() * 70) }, () => text(next, 12, alphabet));
  const withDuration = next() < 0.7;
  const message = create(GetAccessTokenRequestSchema, {
    integrationId: next() < 0.5 ? text(next, 140, alphabet) : "",
    userId: text(next, 20, alphabet),
    provider: text(next, 10, alphabet),
    externalAccountId: next() < 0.3 ? text(next, 20, alphabet) : "",
    scopes,
    ...(withDuration ? { minValidFor: { seconds: BigInt(Math.floor(next() * 7200)), nanos: Math.floor(next() * 1e9) } } : {}),
  });
  return toBinary(GetAccessTokenRequestSchema, message);
}

/** The decoder's answer must be fromBinary's (or a hand-on); returns whether it answered. */
function agrees(bytes: Uint8Array): boolean {
  const flat = decode(Buffer.from(bytes));
  if (flat === undefined) return false;
  expect(flat).toStrictEqual(fromBinary(GetAccessTokenRequestSchema, bytes));
  expect(Object.keys(flat)).toEqual(Object.keys(fromBinary(GetAccessTokenRequestSchema, bytes)));
  return true;
}

describe("flat request decoder", () => {
  it("decodes ordinary requests exactly as protobuf-es does", () => {
    const next = random(1);
    let answered = 0;
    for (let i = 0; i < 500; i++) {
      const bytes = requestBytes(next, ASCII);
      if (agrees(bytes)) answered += 1;
    }
    // Only lists over their item limit (64) are handed on; about one request in ten has one.
    expect(answered).toBeGreaterThan(400);
    expect(agrees(new Uint8Array())).toBe(true);
    expect(agrees(toBinary(GetAccessTokenRequestSchema, create(GetAccessTokenRequestSchema, { minValidFor: {} })))).toBe(true);
  });

  it("hands on non-ASCII text, which protobuf-es decodes and checks", () => {
    const next = random(2);
    for (let i = 0; i < 300; i++) agrees(requestBytes(next, WIDE));
    const wide = toBinary(GetAccessTokenRequestSchema, create(GetAccessTokenRequestSchema, { userId: "é" }));
    expect(decode(Buffer.from(wide))).toBeUndefined();
    // Invalid UTF-8 in a string field.
    expect(decode(Buffer.from([0x12, 0x01, 0xff]))).toBeUndefined();
  });

  it("hands on what it does not know: unknown fields, wrong wire types, a repeated duration, negative or huge numbers", () => {
    const writer = () => new BinaryWriter();
    const cases: Record<string, Uint8Array> = {
      unknownField: writer().tag(9, 2).string("x").finish(),
      unknownVarint: writer().tag(2, 2).string("u").tag(7, 0).uint32(1).finish(),
      twoDurations: writer().tag(5, 2).bytes(writer().tag(1, 0).int64(1).finish()).tag(5, 2).bytes(writer().tag(2, 0).int32(5).finish()).finish(),
      negativeSeconds: writer().tag(5, 2).bytes(writer().tag(1, 0).int64(-1).finish()).finish(),
      hugeSeconds: writer().tag(5, 2).bytes(writer().tag(1, 0).int64(2n ** 60n).finish()).finish(),
      negativeNanos: writer().tag(5, 2).bytes(writer().tag(2, 0).int32(-5).finish()).finish(),
      unknownInDuration: writer().tag(5, 2).bytes(writer().tag(3, 0).int32(1).finish()).finish(),
      tooManyScopes: (() => {
        const w = writer();
        for (let i = 0; i < 65; i++) w.tag(6, 2).string("s");
        return w.finish();
      })(),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      expect(decode(Buffer.from(bytes)), name).toBeUndefined();
      // Each of them is still a message protobuf-es reads.
      expect(() => fromBinary(GetAccessTokenRequestSchema, bytes), name).not.toThrow();
    }
    // A varint where a string belongs (protobuf-es refuses it).
    expect(decode(Buffer.from(writer().tag(2, 0).uint32(5).finish()))).toBeUndefined();
    // A string given twice: the last one, as protobuf-es keeps it.
    expect(agrees(writer().tag(2, 2).string("first").tag(2, 2).string("second").finish())).toBe(true);
  });

  it("hands on truncated and garbage bytes, never answering a different message", () => {
    const next = random(3);
    for (let i = 0; i < 300; i++) {
      const bytes = requestBytes(next, ASCII);
      const cut = bytes.subarray(0, Math.floor(next() * bytes.length));
      let readable = true;
      try {
        fromBinary(GetAccessTokenRequestSchema, cut);
      } catch {
        readable = false;
      }
      const flat = decode(Buffer.from(cut));
      if (!readable) expect(flat).toBeUndefined();
      else if (flat !== undefined) agrees(cut);
      const noise = Uint8Array.from({ length: 1 + Math.floor(next() * 24) }, () => Math.floor(next() * 256));
      try {
        fromBinary(GetAccessTokenRequestSchema, noise);
        agrees(noise);
      } catch {
        expect(decode(Buffer.from(noise))).toBeUndefined();
      }
    }
  });

  it("is made only for messages of strings, string lists and durations", () => {
    expect(flatDecoderFor(StartAuthorizationRequestSchema)).toBeDefined();
    expect(flatDecoderFor(GetAccessTokenResponseSchema)).toBeUndefined();
    expect(flatDecoderFor(ListAuditEventsRequestSchema)).toBeUndefined();
  });
});

describe("limits predicate", () => {
  function sameAsWalk(schema: DescMessage, message: Message): void {
    const walked = requestLimitViolations(schema, message).length === 0;
    // True only when the walk finds nothing; false may also mean "walk it".
    if (withinLimits(schema, message)) expect(walked).toBe(true);
  }

  it("agrees with the walk, and passes what the walk passes for flat messages", () => {
    const next = random(4);
    let passed = 0;
    let refused = 0;
    for (let i = 0; i < 500; i++) {
      const message = fromBinary(GetAccessTokenRequestSchema, requestBytes(next, WIDE));
      sameAsWalk(GetAccessTokenRequestSchema, message);
      const walked = requestLimitViolations(GetAccessTokenRequestSchema, message).length === 0;
      expect(withinLimits(GetAccessTokenRequestSchema, message)).toBe(walked);
      if (walked) passed += 1;
      else refused += 1;
    }
    expect(passed).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(50);
    const long = create(GetAccessTokenRequestSchema, { userId: "u", provider: "p", scopes: ["ok", "s".repeat(257)] });
    expect(withinLimits(GetAccessTokenRequestSchema, long)).toBe(false);
    const atLimit = create(StartAuthorizationRequestSchema, { provider: "p".repeat(64), userId: "u".repeat(256), returnTo: "r".repeat(2048), scopes: Array(64).fill("s") });
    expect(withinLimits(StartAuthorizationRequestSchema, atLimit)).toBe(true);
    expect(withinLimits(StartAuthorizationRequestSchema, create(StartAuthorizationRequestSchema, { ...atLimit, returnTo: "r".repeat(2049) }))).toBe(false);
  });
});
