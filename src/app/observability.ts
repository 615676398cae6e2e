/** Wiring of error reporting, the in-flight watchdog, database health and the metrics. */
import { configuredSecrets, createErrorReporter, type ErrorReporter } from "../observability/error-reporter.js";
import { createInflightWatchdog, type InflightWatchdog } from "../observability/inflight-watchdog.js";
import { createMetrics, type Metrics } from "../observability/metrics.js";
import { createDatabaseHealth, type DatabaseHealth } from "../storage/database-health.js";
import type { Storage } from "./storage.js";
import { tokenWaitLimitMs, type Wiring } from "./wiring.js";

/** First in, last out: faults during the rest of the shutdown are still reported, then flushed. */
export function startErrorReporter({ config, logger, closers }: Wiring): ErrorReporter {
  const errorReporter = createErrorReporter({
    dsn: config.sentryDsn?.reveal(),
    environment: config.sentryEnvironment ?? config.nodeEnv,
    release: config.version,
    logger,
    knownSecrets: configuredSecrets(config),
  });
  closers.add("error reporter", () => errorReporter.close());
  return errorReporter;
}

export interface Telemetry {
  readonly watchdog: InflightWatchdog;
  readonly databaseHealth: DatabaseHealth;
  readonly metrics: Metrics;
}

export function createTelemetry({ config, logger }: Wiring, { database, integrations }: Storage): Telemetry {
  // A call without a deadline may wait up to the wait limit; twice that, it is stuck.
  const watchdog = createInflightWatchdog({ noDeadlineMs: 2 * tokenWaitLimitMs(config) });
  const databaseHealth = createDatabaseHealth({
    ping: (timeoutMs) => database.ping(timeoutMs),
    probeTimeoutMs: config.databaseCallTimeoutMs,
    onChange: (available, cause) =>
      available
        ? logger.info("the database answers again; /readyz follows")
        : logger.warn({ err: cause }, "database calls are failing: /readyz answers 503 until it answers again"),
  });
  const metrics = createMetrics({
    inflight: () => ({ oldestSeconds: watchdog.oldestSeconds(), overdue: watchdog.overdue() }),
    integrationCounts: () => integrations.countByStatus(),
    onCollectError: (error) => logger.warn({ err: error }, "could not count integrations for /metrics"),
  });
  // A pause is rare: start each provider's count at 0 so rate() and increase() see the first one.
  for (const provider of config.providers) metrics.providerPauses.inc({ provider: provider.id }, 0);
  return { watchdog, databaseHealth, metrics };
}
