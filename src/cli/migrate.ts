/**
 * `npm run migrate`: applies pending schema migrations to DATABASE_URL (or the embedded
 * database in BROKER_DATA_DIR) and exits. The broker also migrates at start; this is for
 * deployments that migrate in a separate step.
 */
import { join } from "node:path";
import { ConfigError, loadConfig } from "../config/load-config.js";
import type { Config } from "../config/types.js";
import { createLogger } from "../observability/logger.js";
import { createDatabase } from "../storage/database.js";
import { startEmbeddedPostgres } from "../storage/embedded-postgres.js";
import { runMigrations } from "../storage/migrate.js";

async function migrate(): Promise<number> {
  let config: Config;
  try {
    config = loadConfig({ env: process.env });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`invalid configuration:\n${error.problems.map((p) => `  - ${p}`).join("\n")}\n`);
      return 1;
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel });
  const embedded =
    config.databaseUrl === undefined
      ? await startEmbeddedPostgres({ dataDir: join(config.dataDir, "postgres"), port: 0, logger })
      : undefined;
  const database = createDatabase({ url: config.databaseUrl?.reveal() ?? embedded?.url ?? "", logger });
  try {
    const result = await runMigrations(database.sql, { logger });
    process.stdout.write(
      result.applied.length > 0
        ? `applied migrations ${result.applied.join(", ")}; schema at version ${result.current}\n`
        : `schema up to date at version ${result.current}\n`,
    );
    return 0;
  } finally {
    await database.close(5);
    await embedded?.stop();
  }
}

migrate().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`migration failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
