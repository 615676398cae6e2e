/**
 * `npm run migrate`: applies pending schema migrations to DATABASE_URL (or the embedded
 * database in BROKER_DATA_DIR) and exits. The broker also migrates at start; this is for
 * deployments that migrate in a separate step.
 */
import { createLogger } from "../observability/logger.js";
import { runMigrations } from "../storage/migrate.js";
import { loadConfigForCommand, openCommandDatabase } from "./cli-support.js";

async function migrate(): Promise<number> {
  const config = loadConfigForCommand();
  if (!config) return 1;
  const logger = createLogger({ level: config.logLevel });
  const database = await openCommandDatabase(config, logger);
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
  }
}

migrate().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`migration failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
