import { describe, expect, it } from "vitest";
import { BrokerError } from "../../src/domain/errors.js";
import type { AuditEventInput } from "../../src/domain/ports.js";
import { normalizeAuditEvent } from "../../src/storage/audit-event-input.js";

function rejection(input: unknown): BrokerError {
  try {
    normalizeAuditEvent(input as AuditEventInput);
  } catch (error) {
    if (error instanceof BrokerError) return error;
    throw error;
  }
  throw new Error("accepted");
}

describe("audit event input", () => {
  it("maps the fields to columns with defaults, scopes sorted", () => {
    expect(
      normalizeAuditEvent({ action: "token.issued", outcome: "success", callerKind: "service", scopes: ["b", "a"], details: { k: "v" } }),
    ).toEqual({
      action: "token.issued",
      outcome: "success",
      reason: "",
      caller: "",
      caller_kind: "service",
      user_id: "",
      integration_id: "",
      provider: "",
      request_id: "",
      peer: "",
      scopes: ["a", "b"],
      details: { k: "v" },
    });
  });

  it("refuses fields beyond AuditEventInput, naming them", () => {
    const error = rejection({ action: "token.issued", outcome: "success", accessToken: "ya29.x", extra: 1 });
    expect(error.code).toBe("internal");
    expect(error.message).toContain("accessToken, extra");
    expect(error.message).not.toContain("ya29");
  });

  it("refuses a missing action, an unknown outcome and values of the wrong type", () => {
    expect(rejection({ outcome: "success" }).message).toContain("action");
    expect(rejection({ action: "x", outcome: "bogus" }).message).toContain("outcome");
    expect(rejection({ action: "x", outcome: "success", userId: 7 }).message).toContain("userId");
    expect(rejection({ action: "x", outcome: "success", scopes: "a b" }).message).toContain("scopes");
    expect(rejection({ action: "x", outcome: "success", details: { n: 1 } }).message).toContain("details.n");
  });

  it("replaces what PostgreSQL text cannot store identically (NUL, lone surrogates)", () => {
    const event = normalizeAuditEvent({ action: "x", outcome: "failure", reason: "a\u0000b", userId: "u\uD800", peer: "ok \u{1F600}" });
    expect(event.reason).toBe("a\uFFFDb");
    expect(event.user_id).toBe("u\uFFFD");
    expect(event.peer).toBe("ok \u{1F600}");
  });
});
