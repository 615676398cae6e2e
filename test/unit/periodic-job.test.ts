/** The one scheduler of background work: when passes run, that they never overlap, and a clean stop. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { startPeriodicJob } from "../../src/jobs/periodic.js";
import { createLogger } from "../../src/observability/logger.js";
import { currentRequestContext } from "../../src/observability/request-context.js";
import { awaitedLater } from "../support/wait-until.js";

const logger = createLogger({ level: "silent" });

/** A pass that stays open until `finish` is called, counting its starts. */
function gatedRun() {
  let starts = 0;
  let finish: () => void = () => undefined;
  return {
    starts: () => starts,
    finish: () => finish(),
    run: () => {
      starts += 1;
      return new Promise<void>((resolve) => (finish = resolve));
    },
  };
}

beforeEach(() => vi.useFakeTimers({ now: Date.parse("2030-01-01T00:00:00Z") }));
afterEach(() => vi.useRealTimers());

describe("startPeriodicJob", () => {
  it("runs at once, then one interval after each pass ended", async () => {
    const pass = gatedRun();
    const job = startPeriodicJob({ name: "t", intervalMs: 1_000, logger, run: pass.run });
    expect(pass.starts()).toBe(1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(pass.starts()).toBe(1); // still running: nothing overlaps it
    pass.finish();
    await vi.advanceTimersByTimeAsync(999);
    expect(pass.starts()).toBe(1);
    expect(job.nextRunAt()?.getTime()).toBe(Date.now() + 1);
    await vi.advanceTimersByTimeAsync(1);
    expect(pass.starts()).toBe(2);
    pass.finish();
    await job.stop();
  });

  it("waits firstRunAfterMs before the first pass when told to", async () => {
    const pass = gatedRun();
    const job = startPeriodicJob({ name: "t", intervalMs: 1_000, firstRunAfterMs: 1_000, logger, run: pass.run });
    expect(pass.starts()).toBe(0);
    expect(job.nextRunAt()?.getTime()).toBe(Date.now() + 1_000);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(pass.starts()).toBe(1);
    pass.finish();
    await job.stop();
  });

  it("never schedules when disabled; runOnce joins a running pass, in a context of its own", async () => {
    const ids: (string | undefined)[] = [];
    let finish: () => void = () => undefined;
    const job = startPeriodicJob({
      name: "t",
      intervalMs: 1_000,
      enabled: false,
      logger,
      run: () => {
        ids.push(currentRequestContext()?.job);
        return new Promise<number>((resolve) => (finish = () => resolve(ids.length)));
      },
    });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(ids).toEqual([]);
    expect(job.nextRunAt()).toBeUndefined();
    const first = job.runOnce();
    const joined = awaitedLater(job.runOnce());
    finish();
    expect(await first).toBe(1);
    expect(await joined).toBe(1);
    expect(ids).toHaveLength(1);
    expect(ids[0]).toBe("t");
    await job.stop();
  });

  it("stop aborts the pass, waits for it, and schedules nothing after", async () => {
    const pass = gatedRun();
    let signal: AbortSignal | undefined;
    const job = startPeriodicJob({
      name: "t",
      intervalMs: 1_000,
      logger,
      run: (s) => {
        signal = s;
        return pass.run();
      },
    });
    let stopped = false;
    const stopping = awaitedLater(job.stop().then(() => (stopped = true)));
    await vi.advanceTimersByTimeAsync(0);
    expect(signal?.aborted).toBe(true);
    expect(stopped).toBe(false);
    pass.finish();
    await stopping;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(pass.starts()).toBe(1);
  });

  it("reports a failed scheduled pass and keeps the schedule; runOnce callers get the rejection", async () => {
    const errors: unknown[] = [];
    const failure = new Error("boom");
    const run = vi.fn(() => Promise.reject(failure));
    const job = startPeriodicJob({ name: "t", intervalMs: 1_000, logger, run, onError: (error) => errors.push(error) });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(errors).toEqual([failure, failure]);
    await expect(job.runOnce()).rejects.toBe(failure);
    expect(errors).toHaveLength(2);
    await job.stop();
  });
});
