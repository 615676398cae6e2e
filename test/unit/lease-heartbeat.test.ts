import { describe, expect, it, vi } from "vitest";
import { startLeaseHeartbeat } from "../../src/domain/tokens/lease-heartbeat.js";

/** Resolves when `count` renewals have happened (each beat calls `renew` once). */
function renewals(outcomes: ReadonlyArray<boolean | Error>) {
  let calls = 0;
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const renew = async () => {
    const outcome = outcomes[Math.min(calls, outcomes.length - 1)];
    calls += 1;
    for (const waiter of waiters.filter((w) => w.count <= calls)) waiter.resolve();
    if (outcome instanceof Error) throw outcome;
    return outcome ?? true;
  };
  const reached = (count: number) => new Promise<void>((resolve) => (calls >= count ? resolve() : waiters.push({ count, resolve })));
  return { renew, reached, calls: () => calls };
}

describe("lease heartbeat", () => {
  it("renews again and again, reporting failed renewals and a lost lease without stopping", async () => {
    const failure = new Error("database away");
    const { renew, reached } = renewals([true, failure, false, true]);
    const errors: unknown[] = [];
    let lost = 0;
    const heartbeat = startLeaseHeartbeat({ renew, everyMs: 5, maxMs: 60_000, onLost: () => (lost += 1), onError: (e) => errors.push(e) });
    await reached(4);
    heartbeat.stop();
    expect(errors).toEqual([failure]);
    expect(lost).toBe(1);
  });

  it("renews no more once stopped", async () => {
    const { renew, reached, calls } = renewals([true]);
    const heartbeat = startLeaseHeartbeat({ renew, everyMs: 5, maxMs: 60_000, onLost: () => undefined, onError: () => undefined });
    await reached(1);
    heartbeat.stop();
    const after = calls();
    // Another heartbeat at the same pace beating five times: the stopped one had time for as many.
    await new Promise<void>((resolve) => {
      let beats = 0;
      const probe = startLeaseHeartbeat({
        renew: async () => {
          beats += 1;
          if (beats === 5) {
            probe.stop();
            resolve();
          }
          return true;
        },
        everyMs: 5,
        maxMs: 60_000,
        onLost: () => undefined,
        onError: () => undefined,
      });
    });
    expect(calls()).toBe(after);
  });

  it("stops renewing at its limit, so a holder hung after taking the lease lets it lapse", async () => {
    vi.useFakeTimers();
    try {
      const { renew, calls } = renewals([true]);
      let lost = 0;
      const heartbeat = startLeaseHeartbeat({ renew, everyMs: 1_000, maxMs: 3_500, onLost: () => (lost += 1), onError: () => undefined });
      await vi.advanceTimersByTimeAsync(3_000);
      expect(calls()).toBe(3);
      // A holder that never calls stop(): no renewal once the limit is past.
      await vi.advanceTimersByTimeAsync(60_000);
      expect(calls()).toBe(3);
      expect(lost).toBe(0);
      heartbeat.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
