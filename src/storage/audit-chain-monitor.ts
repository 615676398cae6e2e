/**
 * Keeps a current verdict on the audit chain for `StatusService.GetStatus`, `/readyz`-style probes
 * and the "audit chain broken" alert, without re-reading the whole table every time.
 *
 * Incremental checks remember the last verified (sequence, hash), confirm that event still carries
 * that hash, and verify only what was appended since. A full verification runs on a slower
 * interval (and whenever the remembered event was purged by retention). The monitor also remembers
 * the highest event it ever verified: deleting the newest events leaves a chain that is valid on
 * its own, and only that memory shows the loss — until the process restarts, so run
 * `npm run audit:verify` against an export when a restart follows an incident.
 */
import type postgres from "postgres";
import { startPeriodicJob, type PeriodicJob } from "../jobs/periodic.js";
import type { Logger } from "../observability/logger.js";
import {
  readAuditAnchor,
  VERIFY_TRANSACTION,
  walkAuditChain,
  walkFromAnchor,
  type AuditChainVerdict,
  type ChainPoint,
  type ChainWalk,
} from "./audit-chain.js";

export interface AuditChainMonitorOptions {
  readonly sql: postgres.Sql;
  /** Between incremental checks. */
  readonly intervalMs: number;
  /** Between full verifications; default 60 × `intervalMs`, at least 10 minutes. */
  readonly fullIntervalMs?: number | undefined;
  readonly batchSize?: number | undefined;
  readonly logger: Logger;
  /** Called after every completed check (for a gauge). */
  readonly onVerdict?: ((verdict: AuditChainVerdict) => void) | undefined;
}

export interface AuditChainMonitor {
  /** Runs a full verification now and then checks on the intervals. Await it at start-up. */
  start(): Promise<AuditChainVerdict>;
  /** Checks now: incrementally, or the whole chain with `full`. Rejects when the database fails. */
  check(options?: { full?: boolean }): Promise<AuditChainVerdict>;
  /** The latest verdict; false until the first check completed. */
  intact(): boolean;
  verdict(): AuditChainVerdict | undefined;
  stop(): Promise<void>;
}

export function createAuditChainMonitor(options: AuditChainMonitorOptions): AuditChainMonitor {
  const { sql, logger, batchSize } = options;
  const fullIntervalMs = options.fullIntervalMs ?? Math.max(options.intervalMs * 60, 600_000);
  /** Tip of the last intact verification: where the next incremental check resumes. */
  let verified: ChainPoint | undefined;
  /** The newest event ever verified; its loss means the tail was deleted. */
  let highest: ChainPoint | undefined;
  let latest: AuditChainVerdict | undefined;
  let lastFullAt = 0;
  let schedule: PeriodicJob<AuditChainVerdict> | undefined;
  let running: Promise<AuditChainVerdict> | undefined;
  let stopped = false;

  /** A full walk, plus the check only memory allows: the newest verified events must still exist. */
  async function fullWalk(tx: postgres.TransactionSql): Promise<ChainWalk> {
    const walk = await walkFromAnchor(tx, { batchSize, checkpoint: highest });
    if (!walk.verdict.intact || highest === undefined || walk.tip.sequence >= highest.sequence) return walk;
    const anchor = await readAuditAnchor(tx);
    if (anchor !== undefined && anchor.sequence >= highest.sequence) return walk;
    const missing = walk.tip.sequence + 1n;
    return {
      tip: walk.tip,
      verdict: {
        ...walk.verdict,
        intact: false,
        firstBadSequence: Number(missing),
        problem: `events ${missing}..${highest.sequence} were verified earlier and are gone: the newest events were deleted`,
      },
    };
  }

  async function incrementalWalk(tx: postgres.TransactionSql, from: ChainPoint): Promise<ChainWalk> {
    const [row] = await tx<{ hash: string }[]>`
      select hash from audit_events where sequence = ${from.sequence.toString()}::bigint`;
    // Purged by retention (or deleted): only a full walk can tell which.
    if (row === undefined) return fullWalk(tx);
    if (row.hash !== from.hash) {
      return {
        tip: from,
        verdict: {
          intact: false,
          checked: 0,
          firstBadSequence: Number(from.sequence),
          problem: `event ${from.sequence} differs from when it was verified earlier: the chain was rewritten`,
        },
      };
    }
    return walkAuditChain(tx, from, { batchSize });
  }

  function remember(walk: ChainWalk): void {
    const previous = latest;
    latest = walk.verdict;
    if (walk.verdict.intact) {
      verified = walk.tip;
      if (highest === undefined || walk.tip.sequence >= highest.sequence) highest = walk.tip;
      if (previous && !previous.intact) logger.warn({ audit: walk.verdict }, "the audit chain verifies again");
    } else {
      // A break found anywhere stays reported: the next check walks everything again.
      verified = undefined;
    }
    if (!walk.verdict.intact && (!previous || previous.intact || previous.problem !== walk.verdict.problem)) {
      logger.error({ audit: walk.verdict }, "the audit chain is broken: audit events were modified or deleted");
    }
    try {
      options.onVerdict?.(walk.verdict);
    } catch (error) {
      logger.warn({ err: error }, "the audit verdict hook threw");
    }
  }

  async function runCheck(full: boolean): Promise<AuditChainVerdict> {
    const from = verified;
    const doFull = full || from === undefined;
    const walk = await sql.begin(VERIFY_TRANSACTION, (tx) => (doFull || !from ? fullWalk(tx) : incrementalWalk(tx, from)));
    if (doFull) lastFullAt = Date.now();
    remember(walk);
    return walk.verdict;
  }

  function check(checkOptions: { full?: boolean } = {}): Promise<AuditChainVerdict> {
    // One check at a time; a caller arriving meanwhile waits for it and then runs its own.
    const previous = running ?? Promise.resolve(undefined);
    const next = previous.catch(() => undefined).then(() => runCheck(checkOptions.full === true));
    running = next;
    void next.then(
      () => {
        if (running === next) running = undefined;
      },
      () => {
        if (running === next) running = undefined;
      },
    );
    return next;
  }

  return {
    async start() {
      stopped = false;
      const verdict = await check({ full: true });
      // A stop during the start-up check wins. That check was full: the next comes one interval later.
      if (stopped) return verdict;
      schedule ??= startPeriodicJob({
        name: "audit-chain-monitor",
        intervalMs: options.intervalMs,
        firstRunAfterMs: options.intervalMs,
        logger,
        run: () => check({ full: Date.now() - lastFullAt >= fullIntervalMs }),
        onError: (error) => logger.warn({ err: error }, "the audit chain could not be checked; keeping the previous verdict"),
      });
      return verdict;
    },
    check,
    intact: () => latest?.intact ?? false,
    verdict: () => latest,
    async stop() {
      stopped = true;
      const stopping = schedule;
      schedule = undefined;
      await stopping?.stop();
      await running?.catch(() => undefined);
    },
  };
}
