/**
 * The broker process: load and validate the configuration, start the broker, and shut down
 * gracefully on SIGTERM/SIGINT (a second signal, a second or more after the first, forces the exit).
 */
import { ConfigError, loadConfig } from "./config/load-config.js";
import { publicUrlMismatch } from "./config/public-url.js";
import type { Config } from "./config/types.js";
import { isBrokerError } from "./domain/errors.js";
import { createLogger } from "./observability/logger.js";
import { startBroker, type RunningBroker } from "./server.js";

/** Signals closer together than this are one event (one Ctrl-C delivered along several paths). */
const SAME_PRESS_MS = 1_000;

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig({ env: process.env });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`oauth-broker: invalid configuration:\n${error.problems.map((p) => `  - ${p}`).join("\n")}\n`);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel });
  const mismatch = publicUrlMismatch(config.publicUrl, config.httpAddress);
  if (mismatch !== undefined) logger.warn(mismatch);

  // Installed before the start: a signal during it stops what was started instead of killing
  // the process with the embedded PostgreSQL still running.
  let broker: RunningBroker | undefined;
  let firstSignalAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt !== undefined) {
      // A terminal's Ctrl-C reaches npm and node at once, and npm forwards it again: one press.
      if (performance.now() - firstSignalAt < SAME_PRESS_MS) return;
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    firstSignalAt = performance.now();
    logger.info({ signal }, "shutting down");
    if (broker) stopBroker(broker);
  };
  const stopBroker = (running: RunningBroker) => {
    running.stop().then(
      () => {
        logger.info("stopped");
        logger.flush();
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  try {
    broker = await startBroker({ config, logger });
  } catch (error) {
    if (isBrokerError(error)) {
      // An explained failure: its sentence says what to fix; the cause's text helps, its stack does not.
      const cause = error.cause instanceof Error ? error.cause.message : undefined;
      logger.fatal({ reason: error.reason, cause }, error.message);
    } else {
      logger.fatal({ err: error }, "start-up failed");
    }
    const message = isBrokerError(error) ? error.message : "start-up failed";
    process.stderr.write(`oauth-broker: ${message}\n`);
    process.exit(1);
  }
  if (firstSignalAt !== undefined) stopBroker(broker);
  const started = broker;

  process.on("SIGHUP", () => {
    try {
      started.reload(loadConfig({ env: process.env }));
    } catch (error) {
      const problems = error instanceof ConfigError ? error.problems : [String(error)];
      logger.error({ problems }, "configuration reload refused; the previous policies stay in force");
    }
  });
}

void main();
