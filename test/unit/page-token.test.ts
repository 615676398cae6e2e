/**
 * The one page-token codec (transport/page-token.ts): tokens round-trip, stay bound to their
 * filters, and keep the bytes earlier releases issued, so a token from a replica still running
 * the previous version continues the same page during a rolling upgrade.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { BrokerError } from "../../src/domain/errors.js";
import { pageTokenCodec } from "../../src/transport/page-token.js";

const codec = pageTokenCodec<bigint>({
  fieldsOf: (position) => ({ s: position.toString() }),
  positionOf: (fields) => (typeof fields["s"] === "string" && /^[0-9]+$/.test(fields["s"]) ? BigInt(fields["s"]) : undefined),
  notIssued: "is not a token returned by ListThings",
  otherFilters: "belongs to other filters",
});

function refusalOf(fn: () => unknown): BrokerError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BrokerError);
    return error as BrokerError;
  }
  throw new Error("expected a BrokerError, nothing was thrown");
}

describe("page tokens", () => {
  it("round-trips a position under the same filters", () => {
    const filter = ["alice", ""];
    expect(codec.decode(codec.encode(42n, filter), filter)).toBe(42n);
  });

  it("is base64url JSON of the position and a 16-character digest of the filters, as before", () => {
    const filter = { u: "alice", p: "google", s: 0 };
    const digest = createHash("sha256").update(JSON.stringify(filter)).digest("base64url").slice(0, 16);
    expect(codec.encode(7n, filter)).toBe(Buffer.from(`{"s":"7","f":"${digest}"}`).toString("base64url"));
  });

  it("refuses a token replayed with other filters", () => {
    const token = codec.encode(7n, ["alice"]);
    const error = refusalOf(() => codec.decode(token, ["bob"]));
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toBe("page_token: belongs to other filters");
  });

  it("refuses what it never issued, whatever the bytes", () => {
    for (const token of ["", "not base64 json", Buffer.from("null").toString("base64url"), Buffer.from('{"s":"-1","f":"x"}').toString("base64url")]) {
      const error = refusalOf(() => codec.decode(token, []));
      expect(error.fieldViolations).toEqual([{ field: "page_token", description: "is not a token returned by ListThings" }]);
    }
  });
});
