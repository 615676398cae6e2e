/**
 * `npm run audit:verify`: walks the audit hash chain in DATABASE_URL (or the embedded database in
 * BROKER_DATA_DIR) from the retention anchor and prints the verdict. Exit status: 0 intact,
 * 1 broken (the first bad sequence and what is wrong are printed), 2 when it could not verify
 * (configuration or database problem). Logs go to stderr, the verdict to stdout.
 */
import { parseArgs } from "node:util";
import { createLogger } from "../observability/logger.js";
import { verifyAuditChain } from "../storage/audit-chain.js";
import { loadConfigForCommand, openCommandDatabase } from "./cli-support.js";

const USAGE = "usage: npm run audit:verify [-- --batch-size N]\n";
const EXIT_INTACT = 0;
const EXIT_BROKEN = 1;
const EXIT_UNVERIFIED = 2;

async function verify(): Promise<number> {
  let batchSize: number | undefined;
  try {
    const { values } = parseArgs({ options: { "batch-size": { type: "string" } }, strict: true });
    if (values["batch-size"] !== undefined) {
      batchSize = Number(values["batch-size"]);
      if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error("--batch-size must be a positive integer");
    }
  } catch (error) {
    process.stderr.write(`${USAGE}${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_UNVERIFIED;
  }
  const config = loadConfigForCommand();
  if (!config) return EXIT_UNVERIFIED;
  const logger = createLogger({ level: config.logLevel, destination: process.stderr });
  const database = await openCommandDatabase(config, logger);
  try {
    const verdict = await verifyAuditChain(database.sql, { batchSize });
    if (verdict.intact) {
      process.stdout.write(`audit chain intact: ${verdict.checked} events verified, up to sequence ${verdict.lastSequence ?? 0}\n`);
      return EXIT_INTACT;
    }
    process.stdout.write(
      `audit chain BROKEN at sequence ${verdict.firstBadSequence ?? "?"}: ${verdict.problem ?? "unknown problem"}\n` +
        `(${verdict.checked} events verified before it, up to sequence ${verdict.lastSequence ?? 0})\n`,
    );
    return EXIT_BROKEN;
  } finally {
    await database.close(5);
  }
}

verify().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`audit verification failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(EXIT_UNVERIFIED);
  },
);
