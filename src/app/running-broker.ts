/** What starting a broker returns, and what it is started from. */
import type { Config } from "../config/types.js";
import type { Cipher, Clock } from "../domain/ports.js";
import type { PeriodicJob } from "../jobs/periodic.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { Database } from "../storage/database.js";

export interface RunningBroker {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly metrics: Metrics;
  readonly database: Database;
  readonly cipher: Cipher;
  /**
   * Applies a re-loaded configuration's policies and limits (SIGHUP). Calls in flight finish
   * under the policy they started with; the next call sees the new one.
   */
  reload(next: Config): void;
  /** The background jobs, to run a pass now (operations, tests) instead of at the next interval. */
  readonly jobs: {
    readonly revocations: PeriodicJob;
    readonly cleanup: PeriodicJob;
    readonly proactiveRefresh: { runOnce(): Promise<unknown> };
    /** Writes the counted repeat disclosures (`token.reissued`). */
    readonly disclosureCounts: PeriodicJob;
  };
  /** Turns health NOT_SERVING and refuses new calls; running calls continue. */
  drain(): void;
  /** Drains, waits for running calls (bounded by the configured grace), closes everything. */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: Clock;
}
