/**
 * StatusService: what an operator needs at a glance. Each probe is bounded and independent, so
 * a dead dependency shows as DOWN instead of hanging the status call.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Clock } from "../../domain/ports.js";
import type { IntegrationStatus as DomainStatus } from "../../domain/types.js";
import {
  ComponentState,
  ComponentStatusSchema,
  type StatusService,
  type ComponentStatus,
} from "../../gen/oauthbroker/v1/status_service_pb.js";
import { toProtoStatus } from "./integration-mapping.js";

export interface IntegrationCountRow {
  readonly provider: string;
  readonly status: DomainStatus;
  readonly count: number;
}

export interface StatusDeps {
  readonly version: string;
  readonly startedAt: Date;
  readonly clock: Clock;
  readonly providerIds: () => readonly string[];
  /** Resolves with the round-trip time, rejects when unreachable. */
  readonly pingDatabase: () => Promise<number>;
  readonly checkKeyService: () => Promise<void>;
  readonly migrationStatus: () => Promise<{ applied: number; latest: number }>;
  readonly countIntegrations: () => Promise<readonly IntegrationCountRow[]>;
  readonly isDraining: () => boolean;
  /** Whether the audit hash chain verifies. */
  readonly auditChainIntact: () => Promise<boolean>;
}

const PROBE_TIMEOUT_MS = 2_000;

async function probe(run: () => Promise<unknown>): Promise<ComponentStatus> {
  const started = performance.now();
  try {
    await Promise.race([
      run(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), PROBE_TIMEOUT_MS).unref()),
    ]);
    return create(ComponentStatusSchema, {
      state: ComponentState.OK,
      latency: durationFromMs(Math.round(performance.now() - started)),
    });
  } catch (error) {
    return create(ComponentStatusSchema, {
      state: ComponentState.DOWN,
      detail: error instanceof Error ? error.message : "unreachable",
      latency: durationFromMs(Math.round(performance.now() - started)),
    });
  }
}

export function createStatusServiceHandlers(deps: StatusDeps): ServiceImpl<typeof StatusService> {
  return {
    async getStatus() {
      const now = deps.clock.now();
      const [database, keyService] = await Promise.all([
        probe(deps.pingDatabase),
        probe(deps.checkKeyService),
      ]);
      const databaseUp = database.state === ComponentState.OK;
      const migrations = databaseUp ? await deps.migrationStatus() : undefined;
      const counts = databaseUp ? await deps.countIntegrations() : [];
      const totals = new Map<DomainStatus, number>();
      for (const row of counts) totals.set(row.status, (totals.get(row.status) ?? 0) + row.count);
      return {
        version: deps.version,
        startTime: timestampFromDate(deps.startedAt),
        uptime: durationFromMs(now.getTime() - deps.startedAt.getTime()),
        database,
        keyService,
        migrations: migrations && { appliedVersion: migrations.applied, latestVersion: migrations.latest },
        integrations: [...totals].map(([status, count]) => ({ status: toProtoStatus(status), count: BigInt(count) })),
        providers: deps.providerIds().map((provider) => ({
          provider,
          integrations: counts
            .filter((row) => row.provider === provider)
            .map((row) => ({ status: toProtoStatus(row.status), count: BigInt(row.count) })),
        })),
        auditChainIntact: databaseUp ? await deps.auditChainIntact() : false,
        draining: deps.isDraining(),
      };
    },
  };
}
