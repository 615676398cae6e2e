/**
 * Waiting for a positive signal (a row, a log line, a counter) instead of for a fixed time: the
 * wait ends as soon as the condition holds, and its bound is only there to name what never came.
 */

/** Resolves once `condition` holds, checking every `intervalMs`; fails with `what` after `timeoutMs`. */
export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000, intervalMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * `promise`, marked as handled: for a call started now and awaited only after other waits. A
 * rejection that came meanwhile would otherwise be reported by Node as unhandled (failing the
 * run, whatever the test asserts); awaiting the returned promise still throws it.
 */
export function awaitedLater<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}
