/**
 * Keeps a refresh lease alive while its holder works under it (the provider call, the write):
 * the lease can then be short, so a holder that died is noticed within one lease period instead
 * of after the longest refresh the broker allows. A renewal that fails (the database is away) is
 * reported and tried again at the next beat; the lease then lapses on its own, as it should when
 * nobody can see the holder is alive.
 */
export interface LeaseHeartbeat {
  /** Stops renewing; the lease is then released (or left to lapse) by its holder. */
  stop(): void;
}

export function startLeaseHeartbeat(options: {
  /** Renews the lease; resolves false when the lease is no longer this holder's. */
  readonly renew: () => Promise<boolean>;
  readonly everyMs: number;
  readonly onLost: () => void;
  readonly onError: (error: unknown) => void;
}): LeaseHeartbeat {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
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
    if (stopped) return;
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
