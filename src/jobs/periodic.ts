/**
 * The one scheduler of the broker's background work: a job that runs every `intervalMs` on every
 * replica, never overlapping itself, and stops cleanly: `stop` waits for a running pass. The
 * interval counts from the end of a pass, so a slow pass delays the next instead of piling up.
 * Replicas share the work through their queries (`skip locked`, claims), not through this
 * schedule. Used by the proactive refresher, the audit-chain monitor, retention, cleanup and the
 * revocation retry.
 */
import type { Logger } from "../observability/logger.js";
import { runInBackgroundContext } from "../observability/request-context.js";

export interface PeriodicJob<T = void> {
  /** Runs one pass now (joins a running one). */
  runOnce(): Promise<T>;
  /** When the latest scheduled pass was set to start; undefined until one is scheduled. */
  nextRunAt(): Date | undefined;
  /** Stops the schedule and waits for a running pass; what it did stays done. */
  stop(): Promise<void>;
}

export interface PeriodicJobOptions<T> {
  readonly name: string;
  readonly intervalMs: number;
  readonly logger: Logger;
  readonly run: (signal: AbortSignal) => Promise<T>;
  /** False keeps the schedule off (the job then runs only through `runOnce`). */
  readonly enabled?: boolean | undefined;
  /** Delay before the first scheduled pass; unset runs the first pass at once. */
  readonly firstRunAfterMs?: number | undefined;
  /** Reports a failed scheduled pass (a `runOnce` caller gets the rejection itself). */
  readonly onError?: ((error: unknown) => void) | undefined;
}

export function startPeriodicJob<T = void>(options: PeriodicJobOptions<T>): PeriodicJob<T> {
  const abort = new AbortController();
  const onError =
    options.onError ?? ((error: unknown) => options.logger.warn({ err: error, job: options.name }, "background job failed; retrying at the next interval"));
  let timer: NodeJS.Timeout | undefined;
  let nextRun: Date | undefined;
  let running: Promise<T> | undefined;

  function runOnce(): Promise<T> {
    // Each pass gets its own request id, so its log lines and outbound calls can be told apart.
    running ??= runInBackgroundContext(options.name, () => options.run(abort.signal)).finally(() => {
      running = undefined;
    });
    return running;
  }

  function scheduleIn(delayMs: number): void {
    nextRun = new Date(Date.now() + delayMs);
    timer = setTimeout(tick, delayMs);
    timer.unref();
  }

  function tick(): void {
    timer = undefined;
    runOnce()
      .catch(onError)
      .finally(() => {
        if (!abort.signal.aborted) scheduleIn(options.intervalMs);
      });
  }

  if (options.enabled !== false) {
    if (options.firstRunAfterMs === undefined) tick();
    else scheduleIn(options.firstRunAfterMs);
  }
  return {
    runOnce,
    nextRunAt: () => nextRun,
    async stop() {
      abort.abort();
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      await running?.catch(() => undefined);
    },
  };
}
