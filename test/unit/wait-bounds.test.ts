/** The bounded waits: single flight abandonment, a caller's wait limit, the in-flight watchdog and database readiness. */
import { describe, expect, it } from "vitest";
import { BrokerError, isBrokerError } from "../../src/domain/errors.js";
import { createSingleFlight } from "../../src/domain/tokens/single-flight.js";
import { systemClock } from "../../src/domain/ports.js";
import { awaitWithin } from "../../src/domain/tokens/token-waits.js";
import { createInflightWatchdog } from "../../src/observability/inflight-watchdog.js";
import { createDatabaseHealth } from "../../src/storage/database-health.js";
import { manualClock } from "../support/manual-clock.js";

const never = <T>() => new Promise<T>(() => undefined);

describe("createSingleFlight", () => {
  it("releases every waiter of an operation that never settles with the abandonment error, then starts afresh", async () => {
    const flights = createSingleFlight<string>({ abandonAfterMs: 30, abandoned: (key, ms) => new BrokerError("deadline_exceeded", `${key} after ${ms}`) });
    const waiters = [flights.run("k", never), flights.run("k", () => Promise.resolve("unused"))];
    for (const result of await Promise.allSettled(waiters)) {
      expect(result.status).toBe("rejected");
      expect((result as PromiseRejectedResult).reason).toMatchObject({ code: "deadline_exceeded", message: "k after 30" });
    }
    expect(flights.size).toBe(0);
    expect(await flights.run("k", () => Promise.resolve("fresh"))).toBe("fresh");
  });

  it("shares one operation and frees the key when it settles", async () => {
    const flights = createSingleFlight<number>({ abandonAfterMs: 10_000 });
    let runs = 0;
    const both = await Promise.all([flights.run("k", async () => ++runs), flights.run("k", async () => ++runs)]);
    expect(both).toEqual([1, 1]);
    expect(flights.size).toBe(0);
  });

  it("keeps a newer operation's key when an abandoned one settles late", async () => {
    let settleOld: (value: string) => void = () => undefined;
    const flights = createSingleFlight<string>({ abandonAfterMs: 20 });
    const old = flights.run("k", () => new Promise<string>((resolve) => (settleOld = resolve)));
    await expect(old).rejects.toThrow();
    const newer = flights.run("k", never);
    settleOld("late");
    await Promise.resolve();
    expect(flights.size).toBe(1);
    await expect(newer).rejects.toThrow();
  });
});

describe("awaitWithin", () => {
  it("ends a caller's wait at the broker's limit when the caller set no deadline", async () => {
    const failure = await awaitWithin(never(), undefined, 20, systemClock).catch((e: unknown) => e);
    expect(isBrokerError(failure, "deadline_exceeded")).toBe(true);
    expect((failure as BrokerError).reason).toBe("WAIT_LIMIT_EXCEEDED");
    expect((failure as BrokerError).retryAfterMs).toBeGreaterThan(0);
  });

  it("ends it at the caller's deadline when that comes first", async () => {
    const ctx = { principal: undefined, requestId: "r", peer: "p", deadline: Date.now() + 10 } as never;
    const failure = await awaitWithin(never(), ctx, 60_000, systemClock).catch((e: unknown) => e);
    expect((failure as BrokerError).reason).toBe("DEADLINE_EXCEEDED");
  });
});

describe("createInflightWatchdog", () => {
  it("reports the oldest call and fails readiness only for calls far past their deadline", async () => {
    const clock = manualClock();
    const watchdog = createInflightWatchdog({ graceMs: 10_000, noDeadlineMs: 60_000, now: clock.nowMs });
    const endFirst = watchdog.begin(clock.nowMs() + 5_000);
    clock.advance(1_000);
    watchdog.begin(undefined);
    clock.advance(14_000);
    expect(watchdog.oldestSeconds()).toBe(15);
    expect(watchdog.overdue()).toBe(1);
    await expect(watchdog.check()).rejects.toThrow("1 call(s) in flight more than 10000 ms past their deadline");
    endFirst();
    await expect(watchdog.check()).resolves.toBeUndefined();
    expect(watchdog.oldestSeconds()).toBe(14);
    clock.advance(57_000);
    expect(watchdog.overdue()).toBe(1);
  });
});

describe("createDatabaseHealth", () => {
  it("answers not ready at once after a failing call, and ready again once a ping answers", async () => {
    let pings = 0;
    let reachable = false;
    const health = createDatabaseHealth({ ping: async () => (pings++, reachable ? 1 : Promise.reject(new Error("refused"))) });
    await expect(health.check()).rejects.toThrow("refused");
    health.answered();
    health.unavailable(new Error("reset"));
    const before = pings;
    reachable = true;
    // No waiting on a probe: the answer comes from what the calls saw; the probe it starts
    // in the background learns of the restore for the next one.
    await expect(health.check()).rejects.toThrow(/database calls are failing since/);
    expect(pings).toBe(before + 1);
    await expect.poll(() => health.check().then(() => "ready", () => "not ready")).toBe("ready");
  });
});
