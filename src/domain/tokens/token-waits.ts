/**
 * How token callers wait: each on its own terms for work it shares with others (a load, a
 * refresh), and woken early when the token set it waits for is written elsewhere.
 */
import { BrokerError } from "../errors.js";
import { epochMs, type Clock } from "../ports.js";
import type { RequestContext } from "../types.js";

/**
 * How long before the caller's deadline its wait ends. At the deadline itself the transport
 * gives up on its own (grpc-js answers a bare DEADLINE_EXCEEDED, a client stops reading): the
 * broker's refusal, with its retry hint, must be on its way before that.
 */
export const DEADLINE_ANSWER_MARGIN_MS = 50;

/**
 * Waits for `work` on behalf of one caller: the caller's deadline or cancellation ends its own
 * wait, never the shared work (other callers, and a rotated refresh token, depend on it).
 * `maxMs` bounds the wait of a caller who set no deadline, or a longer one: no call waits
 * forever on something that may never settle. The caller's deadline (epoch ms) is read on `clock`.
 */
export function awaitWithin<T>(work: Promise<T>, ctx: RequestContext | undefined, maxMs: number | undefined, clock: Clock): Promise<T> {
  if (!ctx?.deadline && !ctx?.signal && maxMs === undefined) return work;
  const deadline = ctx?.deadline;
  const now = epochMs(clock);
  const limitedByCaller = deadline !== undefined && (maxMs === undefined || deadline - now <= maxMs);
  const waitMs = limitedByCaller ? Math.max(0, deadline - now - DEADLINE_ANSWER_MARGIN_MS) : maxMs;
  return new Promise<T>((resolve, reject) => {
    const fail = () => {
      cleanup();
      reject(
        limitedByCaller || ctx?.signal?.aborted
          ? new BrokerError("deadline_exceeded", "the deadline passed while the token was being refreshed; retry", { retryAfterMs: 200 })
          : new BrokerError("deadline_exceeded", `the token did not arrive within the broker's wait limit of ${maxMs} ms; retry`, {
              reason: "WAIT_LIMIT_EXCEEDED",
              retryAfterMs: 1_000,
            }),
      );
    };
    const timer = waitMs === undefined ? undefined : setTimeout(fail, waitMs);
    const cleanup = () => {
      clearTimeout(timer);
      ctx?.signal?.removeEventListener("abort", fail);
    };
    if (ctx?.signal?.aborted) return fail();
    ctx?.signal?.addEventListener("abort", fail, { once: true });
    work.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (error: unknown) => {
        cleanup();
        reject(error);
      },
    );
  });
}

/** Waits that end early when something they wait for is announced (a token set written elsewhere). */
export interface Wakeups {
  /** Resolves when `key` is woken, after `ms` at most, or when `signal` aborts. */
  wait(key: string, ms: number, signal?: AbortSignal): Promise<void>;
  wake(key: string): void;
}

export function createWakeups(): Wakeups {
  const waiters = new Map<string, Set<() => void>>();
  return {
    wait(key, ms, signal) {
      return new Promise((resolve) => {
        let set = waiters.get(key);
        if (!set) waiters.set(key, (set = new Set()));
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          set?.delete(done);
          if (set?.size === 0) waiters.delete(key);
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal?.addEventListener("abort", done, { once: true });
        set.add(done);
      });
    },
    wake(key) {
      for (const wake of waiters.get(key) ?? []) wake();
    },
  };
}
