/**
 * Keeps a refresh lease alive while its holder works under it (the provider call, the write):
 * the lease can then be short, so a holder that died is noticed within one lease period instead
 * of after the longest refresh the broker allows. A renewal that fails (the database is away) is
 * reported and tried again at the next beat; the lease then lapses on its own, as it should when
 * nobody can see the holder is alive. Renewals end after `maxMs`, the longest a refresh may run:
 * a holder hung past it (a promise that never settles) must not block the integration on every
 * replica for good. A rotated token kept in memory for its write renews through its own writes.
 */
export interface LeaseHeartbeat {
  /** Stops renewing; the lease is then released (or left to lapse) by its holder. */
  stop(): void;
}

export function startLeaseHeartbeat(options: {
  /** Renews the lease; resolves false when the lease is no longer this holder's. */
  readonly renew: () => Promise<boolean>;
  readonly everyMs: number;
  /** No renewal starts later than this after the start. */
  readonly maxMs: number;
  readonly onLost: () => void;
  readonly onError: (error: unknown) => void;
}): LeaseHeartbeat {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const endsAt = Date.now() + options.maxMs;
  const beat = async (): Promise<void> => {
    try {
      const held = await options.renew();
      if (!held && !stopped) options.onLost();
    } catch (error) {
      if (!stopped) options.onError(error);
    }
    schedule();
  };
  const schedule = (): void => {
    if (stopped || Date.now() + options.everyMs > endsAt) return;
    // One renewal at a time: the next beat is timed from the end of this one.
    timer = setTimeout(() => void beat(), options.everyMs);
    timer.unref();
  };
  schedule();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** How long a refresh may take; `leaseHoldLimitMs` derives the longest lease hold from it. */
export interface RefreshBudgetSettings {
  /** When a caller sets no deadline, the provider call (retries included) may take this long. */
  readonly defaultDeadlineMs?: number | undefined;
  readonly writeRetry?: { readonly attempts?: number | undefined; readonly baseMs?: number | undefined; readonly capMs?: number | undefined } | undefined;
  readonly databaseCallTimeoutMs?: number | undefined;
}

export interface RefreshBudget {
  readonly refreshMs: number;
  readonly writeAttempts: number;
  readonly writeBaseMs: number;
  readonly writeCapMs: number;
  readonly databaseCallMs: number;
  /**
   * The longest a live holder renews its lease for one refresh: the provider call's budget, then
   * the write's attempts (each a write and a lease renewal, bounded by the database call bound)
   * with the waits between them, and the audit commit.
   */
  readonly holdLimitMs: number;
}

export function refreshBudget(settings: RefreshBudgetSettings): RefreshBudget {
  const refreshMs = settings.defaultDeadlineMs ?? 10_000;
  const writeAttempts = Math.max(1, settings.writeRetry?.attempts ?? 5);
  const writeBaseMs = settings.writeRetry?.baseMs ?? 200;
  const writeCapMs = settings.writeRetry?.capMs ?? 2_000;
  const databaseCallMs = settings.databaseCallTimeoutMs ?? 1_000;
  // Reading the stored set, storing a kept one and marking the lease before the call; the audit commit after it.
  const aroundCallMs = 4 * databaseCallMs;
  const writesMs = writeAttempts * 2 * databaseCallMs + (writeAttempts - 1) * writeCapMs;
  return { refreshMs, writeAttempts, writeBaseMs, writeCapMs, databaseCallMs, holdLimitMs: refreshMs + aroundCallMs + writesMs };
}
