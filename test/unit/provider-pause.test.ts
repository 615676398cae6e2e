import { describe, expect, it } from "vitest";
import { BrokerError, isBrokerError } from "../../src/domain/errors.js";
import type { ErrorReason } from "../../src/domain/error-reasons.js";
import { createProviderPauses, PROVIDER_RETRY_AFTER_KEY } from "../../src/domain/tokens/provider-pause.js";
import { manualClock } from "../support/manual-clock.js";

const limited = (retryAfterSeconds?: number, reason: ErrorReason = "PROVIDER_RATE_LIMITED") =>
  new BrokerError("provider_rate_limited", "rate limited", {
    reason,
    metadata: retryAfterSeconds === undefined ? { provider: "p" } : { provider: "p", [PROVIDER_RETRY_AFTER_KEY]: String(retryAfterSeconds) },
    retryAfterMs: 30_000,
  });

function refusal(check: () => void): BrokerError | undefined {
  try {
    check();
    return undefined;
  } catch (error) {
    if (!isBrokerError(error)) throw error;
    return error;
  }
}

describe("provider pauses", () => {
  it("pauses for the provider's Retry-After and answers with the remaining pause, then lets the probe through", () => {
    const clock = manualClock(Date.parse("2030-01-01T00:00:00Z"));
    const pauses = createProviderPauses({ clock, maxPauseMs: 300_000, backoffCapMs: 60_000 });
    expect(pauses.rateLimited("p", limited(10))).toBe(10_000);
    clock.advance(4_000);
    const paused = refusal(() => pauses.check("p"));
    expect(paused).toMatchObject({ code: "provider_rate_limited", reason: "PROVIDER_RATE_LIMITED", retryAfterMs: 6_000, metadata: { provider: "p", paused: "true" } });
    expect(refusal(() => pauses.check("other"))).toBeUndefined();
    clock.advance(6_000);
    expect(refusal(() => pauses.check("p"))).toBeUndefined();
  });

  it("caps an absurd Retry-After at maxPauseMs and keeps the provider's reason", () => {
    const pauses = createProviderPauses({ clock: manualClock(Date.parse("2030-01-01T00:00:00Z")), maxPauseMs: 300_000, backoffCapMs: 60_000 });
    expect(pauses.rateLimited("p", limited(86_400, "PROVIDER_QUOTA_EXCEEDED"))).toBe(300_000);
    expect(refusal(() => pauses.check("p"))?.reason).toBe("PROVIDER_QUOTA_EXCEEDED");
  });

  it("backs off 1 s, 2 s, 4 s ... up to the cap without Retry-After, and starts over after a success", () => {
    const clock = manualClock(Date.parse("2030-01-01T00:00:00Z"));
    const pauses = createProviderPauses({ clock, maxPauseMs: 300_000, backoffCapMs: 5_000 });
    const seen = [1, 2, 3, 4, 5].map(() => {
      const ms = pauses.rateLimited("p", limited());
      clock.advance(ms);
      return ms;
    });
    expect(seen).toEqual([1_000, 2_000, 4_000, 5_000, 5_000]);
    pauses.succeeded("p");
    expect(pauses.rateLimited("p", limited())).toBe(1_000);
  });

  it("never shortens a pause already set by an answer that arrived earlier", () => {
    const pauses = createProviderPauses({ clock: manualClock(Date.parse("2030-01-01T00:00:00Z")), maxPauseMs: 300_000, backoffCapMs: 60_000 });
    pauses.rateLimited("p", limited(20));
    expect(pauses.rateLimited("p", limited(1))).toBe(20_000);
    expect(pauses.paused()).toEqual(new Map([["p", 20_000]]));
  });

  it("adopts another replica's pause without shortening its own or counting a strike", () => {
    const clock = manualClock(Date.parse("2030-01-01T00:00:00Z"));
    const pauses = createProviderPauses({ clock, maxPauseMs: 300_000, backoffCapMs: 60_000 });
    pauses.adopt({ provider: "p", remainingMs: 5_000, reason: "PROVIDER_QUOTA_EXCEEDED" });
    expect(refusal(() => pauses.check("p"))).toMatchObject({ reason: "PROVIDER_QUOTA_EXCEEDED", retryAfterMs: 5_000 });
    pauses.adopt({ provider: "p", remainingMs: 1_000, reason: "PROVIDER_RATE_LIMITED" });
    expect(pauses.paused().get("p")).toBe(5_000);
    pauses.adopt({ provider: "p", remainingMs: 86_400_000, reason: "PROVIDER_RATE_LIMITED" });
    expect(pauses.paused().get("p")).toBe(300_000);
    clock.advance(300_000);
    // Adopted pauses count no strike: the first own rate-limited answer backs off 1 s.
    expect(pauses.rateLimited("p", limited())).toBe(1_000);
  });

  it("keeps a pause when a success arrives inside it (a request sent before the 429), ending only the backoff", () => {
    const clock = manualClock(Date.parse("2030-01-01T00:00:00Z"));
    const pauses = createProviderPauses({ clock, maxPauseMs: 300_000, backoffCapMs: 60_000 });
    pauses.rateLimited("p", limited(10));
    pauses.rateLimited("p", limited());
    pauses.succeeded("p");
    clock.advance(1_000);
    expect(refusal(() => pauses.check("p"))).toMatchObject({ reason: "PROVIDER_RATE_LIMITED", retryAfterMs: 9_000 });
    clock.advance(9_000);
    expect(refusal(() => pauses.check("p"))).toBeUndefined();
    // The success reset the strikes: the next answer without Retry-After backs off 1 s, not 4 s.
    expect(pauses.rateLimited("p", limited())).toBe(1_000);
  });

  it("backs off when Retry-After is 0 or in the past (clamped to 0): it is no pause at all", () => {
    const clock = manualClock(Date.parse("2030-01-01T00:00:00Z"));
    const told: boolean[] = [];
    const pauses = createProviderPauses({ clock, maxPauseMs: 300_000, backoffCapMs: 60_000, onPause: (_notice, fromProvider) => told.push(fromProvider) });
    expect(pauses.rateLimited("p", limited(0))).toBe(1_000);
    expect(refusal(() => pauses.check("p"))).toMatchObject({ retryAfterMs: 1_000 });
    clock.advance(1_000);
    expect(pauses.rateLimited("p", limited(0))).toBe(2_000);
    expect(told).toEqual([false, false]);
  });
});
