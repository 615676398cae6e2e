import { describe, expect, it } from "vitest";
import { auditEventHash, canonicalAuditEvent, GENESIS_HASH, type AuditEventContent } from "../../src/storage/audit-hash.js";

const event: AuditEventContent = {
  sequence: "42",
  time: new Date("2024-05-01T12:34:56.789Z"),
  action: "token.issued",
  outcome: "success",
  reason: "",
  caller: "svc-mailer",
  caller_kind: "service",
  user_id: "u-1",
  integration_id: "5b0c0c0e-0000-4000-8000-000000000001",
  provider: "google",
  request_id: "req-1",
  peer: "127.0.0.1:5000",
  scopes: ["openid", "email", "https://www.googleapis.com/auth/gmail.readonly"],
  details: { min_valid_for: "60s", cache: "hit" },
};

describe("canonical audit serialization", () => {
  it("pins the exact form: fixed field order, sorted scopes and detail keys, ISO time with ms", () => {
    expect(canonicalAuditEvent(event)).toBe(
      '["audit.v1","42","2024-05-01T12:34:56.789Z","token.issued","success","","svc-mailer","service","u-1",' +
        '"5b0c0c0e-0000-4000-8000-000000000001","google","req-1","127.0.0.1:5000",' +
        '["email","https://www.googleapis.com/auth/gmail.readonly","openid"],{"cache":"hit","min_valid_for":"60s"}]',
    );
  });

  it("does not depend on the order of scopes or detail keys, integer-like keys included", () => {
    const reordered: AuditEventContent = {
      ...event,
      scopes: [...event.scopes].reverse(),
      details: { min_valid_for: "60s", "10": "x", cache: "hit", "2": "y" },
    };
    const other: AuditEventContent = { ...event, details: { "2": "y", cache: "hit", "10": "x", min_valid_for: "60s" } };
    expect(canonicalAuditEvent(reordered)).toBe(canonicalAuditEvent({ ...other, scopes: event.scopes }));
    // Code-unit order puts "10" before "2" (JSON.stringify would not keep insertion order either way).
    expect(canonicalAuditEvent(other)).toContain('{"10":"x","2":"y","cache":"hit","min_valid_for":"60s"}');
  });

  it("keeps field boundaries unambiguous", () => {
    const a = canonicalAuditEvent({ ...event, caller: 'a","b', caller_kind: "" });
    const b = canonicalAuditEvent({ ...event, caller: "a", caller_kind: "b" });
    expect(a).not.toBe(b);
  });

  it("changes the hash when any field, the sequence, the time or the previous hash changes", () => {
    const base = auditEventHash(GENESIS_HASH, event);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(auditEventHash(GENESIS_HASH, { ...event })).toBe(base);
    const variants: AuditEventContent[] = [
      { ...event, sequence: "43" },
      { ...event, time: new Date(event.time.getTime() + 1) },
      { ...event, outcome: "failure" },
      { ...event, user_id: "u-2" },
      { ...event, scopes: ["openid"] },
      { ...event, details: { ...event.details, cache: "miss" } },
    ];
    for (const variant of variants) expect(auditEventHash(GENESIS_HASH, variant)).not.toBe(base);
    expect(auditEventHash("f".repeat(64), event)).not.toBe(base);
  });
});
