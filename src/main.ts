/**
 * The broker process: load and validate the configuration, start the broker, and shut down
 * gracefully on SIGTERM/SIGINT (a second signal forces the exit).
 */
import { ConfigError, loadConfig } from "./config/load-config.js";
import { publicUrlMismatch } from "./config/public-url.js";
import type { Config } from "./config/types.js";
import { isBrokerError } from "./domain/errors.js";
import { createLogger } from "./observability/logger.js";
import { startBroker, type RunningBroker } from "./server.js";

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

  let broker: RunningBroker;
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

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    broker.stop().then(
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
  process.on("SIGHUP", () => {
    try {
      broker.reload(loadConfig({ env: process.env }));
    } catch (error) {
      const problems = error instanceof ConfigError ? error.problems : [String(error)];
      logger.error({ problems }, "configuration reload refused; the previous policies stay in force");
    }
  });
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

void main();
