/**
 * Wiring of what lives in PostgreSQL and the key service: the database (embedded when no URL is
 * configured), the repositories, the audit log and its monitor, and the notification feeds.
 */
import { join } from "node:path";
import { createCipher } from "../crypto/create-cipher.js";
import { measureCipher } from "../crypto/measured-cipher.js";
import type { RotatableCipher } from "../crypto/rotatable-cipher.js";
import { BrokerError } from "../domain/errors.js";
import type { OutboundTransport } from "../http/outbound-transport.js";
import type { Metrics } from "../observability/metrics.js";
import { createSecurityAuditRecorder, type SecurityAuditRecorder } from "../observability/security-audit.js";
import { createAuditChainMonitor, type AuditChainMonitor } from "../storage/audit-chain-monitor.js";
import { createPostgresAuditLog, type PostgresAuditLog } from "../storage/audit-log.js";
import { createDatabase, type Database } from "../storage/database.js";
import { startEmbeddedPostgres } from "../storage/embedded-postgres.js";
import { createIntegrationEventStore } from "../storage/integration-events.js";
import { createIntegrationRepository, type IntegrationRepository } from "../storage/integration-repository.js";
import { runMigrations } from "../storage/migrate.js";
import { createProviderPauseNotifications, type ProviderPauseNotifications } from "../storage/provider-pause-notifications.js";
import { createRevocationQueue } from "../storage/revocation-queue.js";
import { createSessionRepository, type SessionRepository } from "../storage/session-repository.js";
import { createStatusQueries } from "../storage/status-queries.js";
import { createTokenNotifications, type TokenNotifications } from "../storage/token-notifications.js";
import { createTokenSetRepository, type TokenSetRepository } from "../storage/token-set-repository.js";
import type { Wiring } from "./wiring.js";

export interface Storage {
  readonly database: Database;
  readonly integrations: IntegrationRepository;
  readonly tokenSets: TokenSetRepository;
  readonly sessions: SessionRepository;
  readonly revocations: ReturnType<typeof createRevocationQueue>;
  readonly statusQueries: ReturnType<typeof createStatusQueries>;
}

async function openDatabase({ config, logger, closers }: Wiring): Promise<Database> {
  let url = config.databaseUrl?.reveal();
  if (url === undefined) {
    const embedded = await startEmbeddedPostgres({ dataDir: join(config.dataDir, "postgres"), port: 0, logger });
    closers.add("embedded postgres", () => embedded.stop());
    logger.info({ dataDir: config.dataDir }, "embedded PostgreSQL started (no DATABASE_URL set)");
    url = embedded.url;
  }
  const database = createDatabase({ url, poolSize: config.databasePoolSize, logger });
  closers.add("database pool", () => database.close(5));
  try {
    await database.ping();
  } catch (error) {
    throw new BrokerError("database_unavailable", "cannot reach PostgreSQL at start-up: check DATABASE_URL and that the server is running", {
      cause: error,
    });
  }
  await runMigrations(database.sql, { logger });
  return database;
}

/** Opens (and migrates) the database; the repositories over it hold no connection of their own. */
export async function openStorage(wiring: Wiring): Promise<Storage> {
  const database = await openDatabase(wiring);
  return {
    database,
    integrations: createIntegrationRepository(database.sql),
    tokenSets: createTokenSetRepository(database.sql),
    sessions: createSessionRepository(database.sql),
    revocations: createRevocationQueue(database.sql),
    statusQueries: createStatusQueries(database.sql),
  };
}

export async function openKeyService({ config, logger, closers }: Wiring, metrics: Metrics, transport: OutboundTransport): Promise<RotatableCipher> {
  const cipher = measureCipher(await createCipher(config, logger, { fetchImpl: transport.fetch }), metrics);
  closers.add("key service", () => cipher.close());
  return cipher;
}

export interface Auditing {
  readonly audit: PostgresAuditLog;
  readonly securityAudit: SecurityAuditRecorder;
  readonly auditMonitor: AuditChainMonitor;
}

export async function openAuditing({ logger, clock, closers }: Wiring, { database }: Storage, metrics: Metrics): Promise<Auditing> {
  const audit = createPostgresAuditLog({
    sql: database.sql,
    logger,
    clock,
    onWriteFailure: (events) => metrics.auditWriteFailures.inc(events),
  });
  closers.add("audit log", () => audit.close());
  const securityAudit = createSecurityAuditRecorder({ audit, logger, clock });
  closers.add("security audit", () => securityAudit.close());
  const auditMonitor = createAuditChainMonitor({
    sql: database.sql,
    intervalMs: 60_000,
    logger,
    onVerdict: (verdict) => metrics.auditChainIntact.set(verdict.intact ? 1 : 0),
  });
  await auditMonitor.start();
  closers.add("audit chain monitor", async () => auditMonitor.stop());
  return { audit, securityAudit, auditMonitor };
}

/** The feeds through which replicas tell each other of token changes and provider pauses. */
export interface TokenFeeds {
  readonly notifications: TokenNotifications;
  readonly providerPauses: ProviderPauseNotifications;
}

export async function openTokenFeeds({ logger, closers }: Wiring, { database }: Storage): Promise<TokenFeeds> {
  const notifications = await createTokenNotifications(database.sql, logger);
  closers.add("token notifications", () => notifications.close());
  const providerPauses = await createProviderPauseNotifications(database.sql, logger);
  closers.add("provider pause notifications", () => providerPauses.close());
  return { notifications, providerPauses };
}

export type ChangeFeed = ReturnType<typeof createIntegrationEventStore>;

/** The integration change feed behind WatchIntegrations. */
export function openChangeFeed({ logger, closers }: Wiring, { database }: Storage): ChangeFeed {
  const changeFeed = createIntegrationEventStore(database.sql, logger);
  closers.add("change feed", () => changeFeed.close());
  return changeFeed;
}
