/**
 * What the maintenance commands share: the validated configuration (problems listed, exit 1)
 * and a database connection — `DATABASE_URL`, or the embedded PostgreSQL in the data dir (the
 * running broker's, or one started for the command).
 */
import { join } from "node:path";
import { ConfigError, loadConfig } from "../config/load-config.js";
import type { Config } from "../config/types.js";
import type { Logger } from "../observability/logger.js";
import { createDatabase, type Database } from "../storage/database.js";
import { openEmbeddedPostgres } from "../storage/embedded-postgres.js";

/** The configuration, or `undefined` after printing every problem to stderr. */
export function loadConfigForCommand(): Config | undefined {
  try {
    return loadConfig({ env: process.env });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`invalid configuration:\n${error.problems.map((p) => `  - ${p}`).join("\n")}\n`);
      return undefined;
    }
    throw error;
  }
}

export async function openCommandDatabase(config: Config, logger: Logger): Promise<Database> {
  const embedded =
    config.databaseUrl === undefined
      ? await openEmbeddedPostgres({ dataDir: join(config.dataDir, "postgres"), port: 0, logger })
      : undefined;
  const database = createDatabase({ url: config.databaseUrl?.reveal() ?? embedded?.url ?? "", logger });
  return {
    ...database,
    async close(timeoutSeconds) {
      await database.close(timeoutSeconds);
      await embedded?.stop();
    },
  };
}
