/**
 * What this replica knows of its database right now, for `/readyz`. Calls report their outcomes
 * (database-bound.ts); once one fails because the database is unavailable, readiness answers
 * 503 at once instead of running a probe that itself waits seconds, and a single short
 * background ping per probe learns of the restore even when no call comes.
 */
import type { DatabaseOutcomes } from "../domain/database-bound.js";

export interface DatabaseHealth extends DatabaseOutcomes {
  unavailable(cause: unknown): void;
  answered(): void;
  /** Resolves when the database answers; rejects at once while it is known to be away, else within `probeTimeoutMs`. */
  check(): Promise<void>;
}

export interface DatabaseHealthOptions {
  /** A round trip bounded by its argument (Database.ping). */
  readonly ping: (timeoutMs: number) => Promise<unknown>;
  /** Bound on a readiness ping (`database.callTimeoutMs`); default 1 s, inside a load balancer's probe budget. */
  readonly probeTimeoutMs?: number | undefined;
  readonly onChange?: ((available: boolean, cause?: unknown) => void) | undefined;
}

export function createDatabaseHealth(options: DatabaseHealthOptions): DatabaseHealth {
  const probeTimeoutMs = options.probeTimeoutMs ?? 1_000;
  let unavailableSince: Date | undefined;
  let probing: Promise<void> | undefined;

  const answered = () => {
    if (unavailableSince === undefined) return;
    unavailableSince = undefined;
    options.onChange?.(true);
  };
  const unavailable = (cause: unknown) => {
    if (unavailableSince !== undefined) return;
    unavailableSince = new Date();
    options.onChange?.(false, cause);
  };
  const probe = (): Promise<void> =>
    (probing ??= options
      .ping(probeTimeoutMs)
      .then(answered, (error: unknown) => {
        unavailable(error);
        throw error;
      })
      .finally(() => (probing = undefined)));

  return {
    answered,
    unavailable,
    async check() {
      if (unavailableSince === undefined) return probe();
      const since = unavailableSince.toISOString();
      // Learns of the restore for the next probe; this one answers now.
      probe().catch(() => undefined);
      throw new Error(`database calls are failing since ${since}`);
    },
  };
}
