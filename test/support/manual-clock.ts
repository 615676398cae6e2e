/**
 * A clock that moves only when the test says so: leases, TTLs and cooldowns measured against it
 * cannot lapse early on a slow machine, nor late on a fast one.
 */
import type { Clock } from "../../src/domain/ports.js";

export interface ManualClock extends Clock {
  /** Milliseconds since the epoch, as `now()` reports them. */
  nowMs(): number;
  advance(ms: number): void;
}

export function manualClock(startMs = 1_000_000): ManualClock {
  let now = startMs;
  return {
    now: () => new Date(now),
    nowMs: () => now,
    advance: (ms) => {
      if (!(ms >= 0)) throw new Error(`a manual clock only moves forward, got ${ms} ms`);
      now += ms;
    },
  };
}
