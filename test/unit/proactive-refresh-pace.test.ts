/**
 * `tokens.proactiveRefreshPerSecond`: a pass that finds more due than its pace allows starts a
 * burst of at most a second's worth, then one refresh per 1/rate seconds, and still refreshes
 * every one of them in the same pass. Unpaced, the same pass starts them as fast as slots free.
 */
import { describe, expect, it } from "vitest";
import { startProactiveRefresher } from "../../src/jobs/proactive-refresh.js";
import type { ClaimedRefresh, TakenLease } from "../../src/domain/ports.js";
import { captureLogger } from "../support/log-capture.js";
import { integrationFixture } from "../support/token-fakes.js";

/** The pace is under test, not the refresh: each claim's lease and row are placeholders the fake never reads. */
const takenLease = (): TakenLease => ({
  acquired: true,
  version: 1,
  tokenSet: { accessTokenCiphertext: "", refreshTokenCiphertext: null, tokenType: "Bearer", scopes: [], expiresAt: new Date(0), version: 1 },
  expiresAt: new Date(0),
  sent: undefined,
});

function dueQueue(count: number) {
  const due = Array.from({ length: count }, (_, i) => `integration-${i}`);
  const startedAt: number[] = [];
  const claimLimits: number[] = [];
  return {
    due,
    startedAt,
    claimLimits,
    claim: async ({ limit }: { limit: number }): Promise<ClaimedRefresh[]> => {
      claimLimits.push(limit);
      return due.splice(0, limit).map((integrationId) => ({ integrationId, provider: "sandbox", integration: integrationFixture(integrationId), lease: takenLease() }));
    },
    tokenService: {
      refreshAhead: async (): Promise<boolean> => {
        startedAt.push(performance.now());
        return true;
      },
    },
  };
}

function refresher(queue: ReturnType<typeof dueQueue>, perSecond: number | undefined) {
  return startProactiveRefresher({
    claim: queue.claim,
    tokenService: queue.tokenService,
    logger: captureLogger().logger,
    replicaId: "replica-a",
    windowMs: 300_000,
    intervalMs: 60_000,
    leaseMs: 10_000,
    concurrency: 16,
    ...(perSecond === undefined ? {} : { perSecond }),
    schedule: false,
  });
}

describe("the proactive refresher's pace", () => {
  it("starts a second's worth at once, then no faster than the rate, and finishes the pass", async () => {
    const rate = 20;
    const queue = dueQueue(30);
    const job = refresher(queue, rate);
    const passStarted = performance.now();
    expect(await job.runOnce()).toBe(30);
    await job.stop();
    expect(queue.startedAt).toHaveLength(30);
    // The burst is bounded by the slots (16) and a second's worth (20): 16 at once.
    expect(queue.claimLimits[0]).toBe(16);
    // The k-th start beyond the burst waits for k tokens at `rate`: a lower bound, so a loaded
    // machine can only make it later, never fail it (2 ms of slack: the bucket counts whole milliseconds).
    for (let k = 1; k <= 14; k++) {
      const start = queue.startedAt[15 + k] ?? Number.NaN;
      expect(start - passStarted).toBeGreaterThanOrEqual((k * 1000) / rate - 2);
    }
  });

  it("caps the burst at a second's worth when the rate is below the slots", async () => {
    const queue = dueQueue(6);
    const job = refresher(queue, 4);
    expect(await job.runOnce()).toBe(6);
    await job.stop();
    expect(queue.claimLimits[0]).toBe(4);
  });

  it("keeps one pace across passes: a new pass gets no fresh burst", async () => {
    const queue = dueQueue(4);
    const job = refresher(queue, 4);
    const firstPassStarted = performance.now();
    expect(await job.runOnce()).toBe(4);
    queue.due.push("integration-late");
    expect(await job.runOnce()).toBe(1);
    await job.stop();
    // The first pass spent the whole burst of 4 after it started: the next start, in the second
    // pass, waits for a token (250 ms at 4/s), however soon that pass begins.
    expect((queue.startedAt[4] ?? Number.NaN) - firstPassStarted).toBeGreaterThanOrEqual(250 - 2);
  });

  it("unpaced, claims for every free slot at once", async () => {
    const queue = dueQueue(40);
    const job = refresher(queue, undefined);
    expect(await job.runOnce()).toBe(40);
    await job.stop();
    expect(queue.claimLimits[0]).toBe(16);
    expect(queue.startedAt).toHaveLength(40);
  });

  it("unpaced, claims again once a quarter of the slots are free, not for each slot that frees", async () => {
    const queue = dueQueue(40);
    const finishers: Array<() => void> = [];
    queue.tokenService.refreshAhead = () => new Promise<boolean>((resolve) => finishers.push(() => resolve(true)));
    const job = refresher(queue, undefined);
    const pass = job.runOnce();
    await expect.poll(() => finishers.length).toBe(16);
    for (let finished = 1; finished <= 3; finished++) {
      finishers.shift()?.();
      // Each settled refresh gives the pass a turn; none of the first three makes it claim.
      await expect.poll(() => queue.due.length + finishers.length).toBe(40 - 16 + 16 - finished);
    }
    expect(queue.claimLimits).toEqual([16]);
    finishers.shift()?.();
    await expect.poll(() => queue.claimLimits).toEqual([16, 4]);
    while (queue.due.length > 0 || finishers.length > 0) {
      finishers.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await pass).toBe(40);
    await job.stop();
    // Every claim but the first and the last (what was left) waited for four free slots.
    expect(queue.claimLimits.slice(1, -1).every((limit) => limit >= 4)).toBe(true);
  });

  it("a stopped job ends a paced pass without waiting out the pace", async () => {
    const queue = dueQueue(1_000);
    const job = refresher(queue, 1);
    const pass = job.runOnce();
    await job.stop();
    // At 1/s the pass would take 1,000 s; stopping ends it after its burst.
    expect(await pass).toBeLessThan(1_000);
  });
});
