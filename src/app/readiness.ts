/**
 * What `/readyz` and the StatusService report, built from the started parts. Once current, the
 * schema stays so for this build: no query per probe (while the database is away, such a query
 * waited out the probe's whole budget).
 */
import type { Cipher } from "../domain/ports.js";
import type { TokenService } from "../domain/tokens/token-service.js";
import type { AuditChainMonitor } from "../storage/audit-chain-monitor.js";
import { latestMigrationVersion, migrationStatus } from "../storage/migrate.js";
import type { StatusDeps } from "../transport/handlers/status-service.js";
import type { ReadinessCheck } from "../transport/http-routes.js";
import type { DrainState } from "./live-settings.js";
import type { Telemetry } from "./observability.js";
import type { Storage } from "./storage.js";
import type { Wiring } from "./wiring.js";

export interface ReadinessParts {
  readonly storage: Storage;
  readonly cipher: Cipher;
  readonly telemetry: Pick<Telemetry, "databaseHealth" | "watchdog">;
  readonly auditMonitor: AuditChainMonitor;
  readonly tokenService: TokenService;
  readonly drain: DrainState;
}

export interface Readiness {
  /** The checks of `/readyz`, in the order it reports them. */
  readonly checks: readonly ReadinessCheck[];
  /** What the StatusService reads. */
  readonly status: StatusDeps;
}

export function createReadiness({ config, clock }: Wiring, startedAt: Date, parts: ReadinessParts): Readiness {
  const { storage, cipher, drain } = parts;
  const { databaseHealth, watchdog } = parts.telemetry;
  const { database } = storage;
  let schemaIsCurrent = false;
  const schemaCurrent = async () => {
    if (schemaIsCurrent) return;
    await databaseHealth.check();
    const status = await migrationStatus(database.sql);
    if (status.applied < latestMigrationVersion()) throw new Error(`schema at version ${status.applied}, this build needs ${status.latest}`);
    schemaIsCurrent = true;
  };
  const checks: ReadinessCheck[] = [
    {
      name: "draining",
      check: async () => {
        if (drain.isDraining()) throw new Error("shutting down");
      },
    },
    { name: "database", check: () => databaseHealth.check() },
    { name: "migrations", check: schemaCurrent },
    { name: "calls", check: () => watchdog.check() },
    { name: "key_service", check: () => cipher.check() },
  ];
  const status: StatusDeps = {
    version: config.version,
    startedAt,
    clock,
    providerIds: () => config.providers.map((p) => p.id),
    pingDatabase: () => database.ping(),
    checkKeyService: () => cipher.check(),
    migrationStatus: () => migrationStatus(database.sql),
    countIntegrations: () => storage.integrations.countByStatus(),
    isDraining: () => drain.isDraining(),
    auditChainIntact: async () => parts.auditMonitor.intact(),
    refreshOutcomesSince: (since) => storage.statusQueries.refreshOutcomesSince(since),
    nextProactiveRefresh: () => storage.statusQueries.nextProactiveRefresh(config.tokens.proactiveRefreshWindowSeconds * 1000),
    circuitStates: () => parts.tokenService.circuitStates(),
  };
  return { checks, status };
}
