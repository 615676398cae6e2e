/**
 * Every wait on the database on the hot path ends within one bound (`database.callTimeoutMs`,
 * default 1 s), whatever the pool does meanwhile: a query queued behind a reconnect, a pool
 * acquisition, an audit commit. Past the bound the call fails with `database_unavailable` and
 * RetryInfo (the caller learns "not now" fast and honestly), and the query, still running, goes
 * nowhere. Outcomes are reported so readiness learns of an outage from the calls themselves.
 */
import { BrokerError, isBrokerError } from "./errors.js";

export const DATABASE_RETRY_AFTER_MS = 1_000;

export interface DatabaseOutcomes {
  /** A call failed because the database is unavailable (refused, reset, or no answer in time). */
  unavailable?(cause: unknown): void;
  /** A call got an answer. */
  answered?(): void;
}

/** `work`, or `database_unavailable` once `ms` pass without an answer. */
export function withinDatabaseBound<T>(work: Promise<T>, ms: number, what: string, outcomes?: DatabaseOutcomes): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new BrokerError("database_unavailable", `could not ${what}: the database did not answer within ${ms} ms; retry later`, {
            retryAfterMs: DATABASE_RETRY_AFTER_MS,
            metadata: { operation: what },
          }),
        ),
      ms,
    );
  });
  // A late failure of abandoned work has nobody left to hear it.
  work.catch(() => undefined);
  return Promise.race([work, bound]).then(
    (value) => {
      clearTimeout(timer);
      outcomes?.answered?.();
      return value;
    },
    (error: unknown) => {
      clearTimeout(timer);
      if (isBrokerError(error, "database_unavailable")) outcomes?.unavailable?.(error);
      else outcomes?.answered?.();
      throw error;
    },
  );
}

/** `repository` with each of its async methods bounded by `ms` (see `withinDatabaseBound`). */
export function boundDatabaseCalls<T extends object>(repository: T, label: string, ms: number, outcomes?: DatabaseOutcomes): T {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(repository, {
    get(target, key, receiver) {
      const member: unknown = Reflect.get(target, key, receiver);
      if (typeof member !== "function") return member;
      let bounded = wrapped.get(key);
      if (bounded === undefined) {
        bounded = (...args: unknown[]) => {
          const result: unknown = (member as (...a: unknown[]) => unknown).apply(target, args);
          return result instanceof Promise ? withinDatabaseBound(result, ms, `complete ${label}.${String(key)}`, outcomes) : result;
        };
        wrapped.set(key, bounded);
      }
      return bounded;
    },
  });
}
