/**
 * Concurrent callers asking for the same key share one in-flight operation and its result.
 *
 * A shared operation that outlives `abandonAfterMs` is abandoned: every caller waiting on it is
 * released with the error `abandoned` builds, and the key is free again, so the next caller
 * starts afresh instead of joining something that may never settle (a database query lost in a
 * connection cut wedged every later call for its integration on that replica; issue 17). The
 * operation itself is not cancelled; its late result, or failure, goes nowhere.
 */
export interface SingleFlight<T> {
  run(key: string, operation: () => Promise<T>): Promise<T>;
  readonly size: number;
}

export interface SingleFlightOptions {
  readonly abandonAfterMs?: number | undefined;
  readonly abandoned?: ((key: string, afterMs: number) => Error) | undefined;
  /** Told of each abandonment (a log line, a metric). */
  readonly onAbandon?: ((key: string) => void) | undefined;
}

export function createSingleFlight<T>(options: SingleFlightOptions = {}): SingleFlight<T> {
  const inFlight = new Map<string, Promise<T>>();
  const { abandonAfterMs } = options;
  return {
    run(key, operation) {
      const running = inFlight.get(key);
      if (running) return running;
      let timer: NodeJS.Timeout | undefined;
      const operationDone = operation();
      const shared: Promise<T> =
        abandonAfterMs === undefined
          ? operationDone
          : Promise.race([
              operationDone,
              new Promise<never>((_, reject) => {
                timer = setTimeout(() => {
                  options.onAbandon?.(key);
                  reject(options.abandoned?.(key, abandonAfterMs) ?? new Error(`the operation for ${key} was abandoned after ${abandonAfterMs} ms`));
                }, abandonAfterMs);
                timer.unref();
              }),
            ]);
      // An abandoned operation that settles later must not free a key a newer one holds.
      const settled = shared.finally(() => {
        clearTimeout(timer);
        if (inFlight.get(key) === settled) inFlight.delete(key);
      });
      // The late outcome of an abandoned operation has nobody left to hear it.
      operationDone.catch(() => undefined);
      inFlight.set(key, settled);
      return settled;
    },
    get size() {
      return inFlight.size;
    },
  };
}
