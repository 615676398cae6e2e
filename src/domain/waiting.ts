/** Waiting, the ways the broker does it: plain sleeps and backoff between retries. */

/** Resolves after `ms`, or as soon as `signal` aborts (never rejects: the caller checks why it woke). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Full jitter (AWS architecture blog): a random wait up to the exponential bound. */
export function fullJitterBackoff(attempt: number, baseMs = 100, capMs = 5_000): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
}
