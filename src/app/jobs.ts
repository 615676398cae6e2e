/**
 * Wiring of the periodic jobs: audit retention, proactive refresh, the counts of repeated token
 * disclosures, revocation retry and cleanup.
 */
import type { IntegrationDeletion } from "../domain/integration-deletion.js";
import type { TokenService } from "../domain/tokens/token-service.js";
import { startAuditRetentionJob, type AuditRetentionJob } from "../jobs/audit-retention.js";
import { logCleanup, runCleanup } from "../jobs/cleanup.js";
import { startPeriodicJob, type PeriodicJob } from "../jobs/periodic.js";
import { startProactiveRefresher, type ProactiveRefresher } from "../jobs/proactive-refresh.js";
import { runInBackgroundContext } from "../observability/request-context.js";
import { createAuditRetentionStore } from "../storage/audit-retention-store.js";
import type { ChangeFeed, Storage } from "./storage.js";
import type { Wiring } from "./wiring.js";

const REVOCATION_BATCH = 20;

export function startAuditRetention({ config, logger, closers }: Wiring, { database }: Storage): AuditRetentionJob {
  const auditRetention = startAuditRetentionJob({
    store: createAuditRetentionStore(database.sql),
    retentionDays: config.retention.auditDays,
    intervalMs: 3_600_000,
    logger,
  });
  closers.add("audit retention", async () => auditRetention.stop());
  return auditRetention;
}

export function startProactiveRefresh(
  { config, logger, closers, replicaId }: Wiring,
  { tokenSets }: Storage,
  tokenService: TokenService,
): ProactiveRefresher {
  const refresher = startProactiveRefresher({
    claim: (request) => tokenSets.claimExpiring(request),
    // Each refresh gets its own request id: its log lines, provider and Vault requests correlate.
    tokenService: {
      refreshAhead: (claimed, withinMs) => runInBackgroundContext("proactive-refresh", () => tokenService.refreshAhead(claimed, withinMs)),
    },
    logger,
    replicaId,
    windowMs: config.tokens.proactiveRefreshWindowSeconds * 1000,
    intervalMs: config.tokens.proactiveRefreshIntervalSeconds * 1000,
    leaseMs: config.tokens.leaseSeconds * 1000,
    concurrency: config.tokens.proactiveRefreshConcurrency,
    perSecond: config.tokens.proactiveRefreshPerSecond,
  });
  closers.add("proactive refresher", () => refresher.stop());
  return refresher;
}

/**
 * Writes the repeats counted since the last pass (`token.reissued`). Stopped before the token
 * service closes, whose own last pass runs before the audit log closes.
 */
export function startDisclosureCounts({ config, logger, closers }: Wiring, tokenService: TokenService): PeriodicJob {
  const intervalMs = config.tokens.reissueFlushSeconds * 1000;
  const job = startPeriodicJob({
    name: "disclosure counts",
    intervalMs,
    firstRunAfterMs: intervalMs,
    logger,
    run: () => tokenService.flushDisclosures(),
  });
  closers.add("disclosure counts", () => job.stop());
  return job;
}

export interface Housekeeping {
  readonly revocationRetry: PeriodicJob;
  readonly cleanup: PeriodicJob;
}

export function startHousekeeping(
  { config, logger, clock, closers }: Wiring,
  { integrations, sessions }: Storage,
  changeFeed: ChangeFeed,
  deletion: IntegrationDeletion,
): Housekeeping {
  const revocationRetry = startPeriodicJob({
    name: "revocation retry",
    intervalMs: 30_000,
    logger,
    run: async (signal) => {
      while (!signal.aborted && (await deletion.retryDue(REVOCATION_BATCH)) === REVOCATION_BATCH);
    },
  });
  closers.add("revocation retry", () => revocationRetry.stop());
  const cleanup = startPeriodicJob({
    name: "cleanup",
    intervalMs: 600_000,
    logger,
    run: async (signal) => {
      const counts = await runCleanup(
        {
          purgeExpiredSessions: (before, limit) => sessions.purgeExpired(before, limit),
          purgeTombstones: (before, limit) => integrations.purgeTombstones(before, limit),
          purgeChangeEvents: (before, limit) => changeFeed.purgeOlderThan(before, limit),
          eraseDeadRefreshTokens: (before, limit) => integrations.eraseDeadRefreshTokens(before, limit),
        },
        config.retention,
        clock,
        signal,
      );
      logCleanup(logger, counts);
    },
  });
  closers.add("cleanup", () => cleanup.stop());
  return { revocationRetry, cleanup };
}
