/**
 * Notices calls that stay in flight far beyond their deadline: the sign of a wait that never
 * settles (issue 17: a replica kept answering `/readyz` 200 while its GetAccessToken calls hung
 * for good, and a load balancer kept sending it traffic). Unary calls only: a stream
 * (WatchIntegrations, Health.Watch) is meant to stay open.
 */
export interface InflightCall {
  readonly startedAt: number;
  /** When the call is overdue: its deadline (or the broker's wait limit) plus the grace. */
  readonly overdueAt: number;
}

export interface InflightWatchdog {
  /** Starts watching one call; the returned function ends it. */
  begin(deadline: number | undefined): () => void;
  /** Age of the oldest call in flight, in seconds (0 when none). */
  oldestSeconds(): number;
  /** Calls in flight past their deadline plus the grace. */
  overdue(): number;
  /** Rejects (for `/readyz`) while any call is overdue. */
  check(): Promise<void>;
}

export interface InflightWatchdogOptions {
  /** How long past its deadline a call may still be in flight before it counts as stuck; default 10 s. */
  readonly graceMs?: number | undefined;
  /** The deadline assumed for a call that set none (the broker's wait limit). */
  readonly noDeadlineMs: number;
  readonly now?: (() => number) | undefined;
}

export function createInflightWatchdog(options: InflightWatchdogOptions): InflightWatchdog {
  const now = options.now ?? Date.now;
  const graceMs = options.graceMs ?? 10_000;
  // Insertion order is start order: the first entry is the oldest call.
  const calls = new Set<InflightCall>();
  const overdue = () => {
    const at = now();
    let count = 0;
    for (const call of calls) if (call.overdueAt <= at) count++;
    return count;
  };
  return {
    begin(deadline) {
      const startedAt = now();
      const call = { startedAt, overdueAt: Math.min(deadline ?? Infinity, startedAt + options.noDeadlineMs) + graceMs };
      calls.add(call);
      return () => void calls.delete(call);
    },
    oldestSeconds() {
      const oldest = calls.values().next();
      return oldest.done ? 0 : (now() - oldest.value.startedAt) / 1000;
    },
    overdue,
    async check() {
      const stuck = overdue();
      if (stuck > 0) throw new Error(`${stuck} call(s) in flight more than ${graceMs} ms past their deadline`);
    },
  };
}
