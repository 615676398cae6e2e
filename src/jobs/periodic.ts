/**
 * A job that runs now and then every `intervalMs` on every replica, never overlapping itself,
 * and stops cleanly: `stop` waits for a running pass. Replicas share the work through their
 * queries (`skip locked`, claims), not through this schedule.
 */
import type { Logger } from "../observability/logger.js";
import { runInBackgroundContext } from "../observability/request-context.js";

export interface PeriodicJob<T = void> {
  /** Runs one pass now (joins a running one). */
  runOnce(): Promise<T>;
  /** Stops the schedule and waits for a running pass; what it did stays done. */
  stop(): Promise<void>;
}

export function startPeriodicJob<T = void>(options: {
  readonly name: string;
  readonly intervalMs: number;
  readonly logger: Logger;
  readonly run: (signal: AbortSignal) => Promise<T>;
  /** False keeps the schedule off (the job then runs only through `runOnce`). */
  readonly enabled?: boolean | undefined;
}): PeriodicJob<T> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<T> | undefined;

  function runOnce(): Promise<T> {
    // Each pass gets its own request id, so its log lines and outbound calls can be told apart.
    running ??= runInBackgroundContext(options.name, () => options.run(abort.signal)).finally(() => {
      running = undefined;
    });
    return running;
  }

  function tick(): void {
    runOnce()
      .catch((error: unknown) => options.logger.warn({ err: error, job: options.name }, "background job failed; retrying at the next interval"))
      .finally(() => {
        if (abort.signal.aborted) return;
        timer = setTimeout(tick, options.intervalMs);
        timer.unref();
      });
  }

  if (options.enabled !== false) tick();
  return {
    runOnce,
    async stop() {
      abort.abort();
      if (timer !== undefined) clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
}
