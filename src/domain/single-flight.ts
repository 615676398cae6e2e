/** Concurrent callers asking for the same key share one in-flight operation and its result. */
export interface SingleFlight<T> {
  run(key: string, operation: () => Promise<T>): Promise<T>;
  readonly size: number;
}

export function createSingleFlight<T>(): SingleFlight<T> {
  const inFlight = new Map<string, Promise<T>>();
  return {
    run(key, operation) {
      const running = inFlight.get(key);
      if (running) return running;
      const started = operation().finally(() => inFlight.delete(key));
      inFlight.set(key, started);
      return started;
    },
    get size() {
      return inFlight.size;
    },
  };
}
