/**
 * `npm run audit:export -- [--since ISO] [--until ISO]`: the audit trail as JSON lines on stdout
 * (one event per line, oldest first, hashes included) for SIEM ingestion. Events are read in
 * keyset pages and written with backpressure, so any size of trail streams in constant memory.
 * `--since` is inclusive, `--until` exclusive. Logs go to stderr. Exit status: 0 done,
 * 2 bad arguments or configuration, 1 failed midway.
 */
import { once } from "node:events";
import { parseArgs } from "node:util";
import { createLogger } from "../observability/logger.js";
import { exportAuditEvents } from "../storage/audit-export.js";
import { loadConfigForCommand, openCommandDatabase } from "./cli-support.js";

const USAGE = "usage: npm run audit:export -- [--since 2024-01-01T00:00:00Z] [--until 2024-02-01T00:00:00Z]\n";

function parseTime(name: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const date = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(date.getTime())) {
    throw new Error(`--${name} must be an ISO 8601 date or date-time, got ${JSON.stringify(value)}`);
  }
  return date;
}

/** Set when stdout fails, e.g. EPIPE once a reader such as `| head` went away. */
let stdoutError: NodeJS.ErrnoException | undefined;
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  stdoutError = error;
});

async function writeLine(line: string): Promise<void> {
  if (stdoutError) throw stdoutError;
  if (!process.stdout.write(line)) await once(process.stdout, "drain");
}

async function exportEvents(): Promise<number> {
  let since: Date | undefined;
  let until: Date | undefined;
  try {
    const { values } = parseArgs({ options: { since: { type: "string" }, until: { type: "string" } }, strict: true });
    since = parseTime("since", values.since);
    until = parseTime("until", values.until);
  } catch (error) {
    process.stderr.write(`${USAGE}${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  }
  const config = loadConfigForCommand();
  if (!config) return 2;
  const logger = createLogger({ level: config.logLevel, destination: process.stderr });
  const database = await openCommandDatabase(config, logger);
  try {
    const written = await exportAuditEvents({ sql: database.sql, since, until, writeLine });
    logger.info({ events: written }, "audit events exported");
    return 0;
  } finally {
    await database.close(5);
  }
}

exportEvents().then(
  (code) => process.stdout.write("", () => process.exit(code)),
  (error: unknown) => {
    // A reader that went away ends the export quietly.
    if (stdoutError?.code === "EPIPE") process.exit(0);
    const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : "";
    process.stderr.write(`audit export failed: ${error instanceof Error ? error.message : String(error)}${cause}\n`);
    process.exit(1);
  },
);
