/** Coalescing of refusal events: per kind and peer host, per window, with bounded memory. */
import { describe, expect, it } from "vitest";
import type { AuditEventInput } from "../../src/domain/ports.js";
import { createSecurityAuditRecorder, peerHost, type SecurityEvent } from "../../src/observability/security-audit.js";
import { captureLogger } from "../support/log-capture.js";
import { manualClock } from "../support/manual-clock.js";

function setup(options: { maxKeys?: number; failWrites?: boolean } = {}) {
  const clock = manualClock(Date.parse("2024-05-01T12:00:00Z"));
  const written: AuditEventInput[] = [];
  const { logger, log } = captureLogger();
  const recorder = createSecurityAuditRecorder({
    audit: {
      record: async (event) => {
        if (options.failWrites === true) throw new Error("database down");
        written.push(event);
      },
    },
    logger,
    clock,
    windowMs: 60_000,
    maxKeys: options.maxKeys,
    sweep: false,
  });
  return { recorder, written, log, advance: (ms: number) => clock.advance(ms) };
}

function refusal(overrides: Partial<SecurityEvent> = {}): SecurityEvent {
  return {
    action: "auth.failed",
    outcome: "failure",
    reason: "expired",
    rpc: "oauthbroker.v1.TokenService/GetAccessToken",
    requestId: "req-0",
    peer: "10.0.0.7:40000",
    ...overrides,
  };
}

describe("security audit recorder", () => {
  it("records the first refusal at once and counts the repeats of its window into one event", async () => {
    const { recorder, written, advance } = setup();
    for (let i = 0; i < 10; i++) {
      // A client reconnecting from new source ports is still the same peer.
      recorder.record(refusal({ requestId: `req-${i}`, peer: `10.0.0.7:${40000 + i}` }));
      advance(1_000);
    }
    await recorder.settle();
    expect(written).toHaveLength(1);
    expect(written[0]).toMatchObject({ action: "auth.failed", reason: "expired", requestId: "req-0", details: { count: "1" } });

    advance(60_000);
    recorder.record(refusal({ requestId: "req-next" }));
    await recorder.settle();
    expect(written).toHaveLength(3);
    expect(written[1]).toMatchObject({
      requestId: "req-9",
      details: { count: "9", coalesced: "true", first_request_id: "req-1", last_request_id: "req-9" },
    });
    // The refusal after the window opens a new one: recorded at once.
    expect(written[2]).toMatchObject({ requestId: "req-next", details: { count: "1" } });
  });

  it("keeps different reasons, peers, callers and methods apart", async () => {
    const { recorder, written } = setup();
    recorder.record(refusal());
    recorder.record(refusal({ reason: "bad_signature" }));
    recorder.record(refusal({ peer: "10.0.0.8:1" }));
    recorder.record(refusal({ caller: "billing", callerKind: "service" }));
    recorder.record(refusal({ rpc: "oauthbroker.v1.StatusService/GetStatus" }));
    recorder.record(refusal({ action: "policy.denied", outcome: "denied", reason: "RPC_NOT_ALLOWED" }));
    await recorder.flush();
    expect(written).toHaveLength(6);
    expect(written.every((event) => event.details?.["count"] === "1")).toBe(true);
  });

  it("bounds the keys it tracks: beyond the limit, refusals are counted per action in one overflow event", async () => {
    const { recorder, written } = setup({ maxKeys: 3 });
    for (let i = 0; i < 10; i++) recorder.record(refusal({ peer: `10.0.1.${i}:5`, requestId: `req-${i}` }));
    await recorder.settle();
    expect(written).toHaveLength(3);
    await recorder.flush();
    expect(written).toHaveLength(4);
    expect(written[3]).toMatchObject({
      action: "auth.failed",
      reason: "various",
      peer: "",
      details: { count: "7", coalesced: "overflow", first_request_id: "req-3", last_request_id: "req-9" },
    });
  });

  it("logs a write that failed and goes on", async () => {
    const { recorder, log } = setup({ failWrites: true });
    recorder.record(refusal());
    await recorder.settle();
    expect(log.lines.some((line) => line["msg"] === "a refused call could not be audited")).toBe(true);
  });

  it("records what was counted at close, and nothing after", async () => {
    const { recorder, written } = setup();
    recorder.record(refusal({ requestId: "a" }));
    recorder.record(refusal({ requestId: "b" }));
    await recorder.close();
    recorder.record(refusal({ requestId: "c" }));
    await recorder.settle();
    expect(written.map((event) => [event.requestId, event.details?.["count"]])).toEqual([
      ["a", "1"],
      ["b", "1"],
    ]);
  });

  it.each([
    ["127.0.0.1:5050", "127.0.0.1"],
    ["[::1]:5050", "::1"],
    ["::ffff:10.0.0.1:443", "::ffff:10.0.0.1"],
    ["unknown", "unknown"],
  ])("peer host of %s is %s", (peer, host) => {
    expect(peerHost(peer)).toBe(host);
  });
});
