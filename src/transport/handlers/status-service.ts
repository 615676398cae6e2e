/**
 * StatusService: what an operator needs at a glance. Each probe is bounded and independent, so
 * a dead dependency shows as DOWN instead of hanging the status call.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Clock } from "../../domain/ports.js";
import type { IntegrationStatus as DomainStatus } from "../../domain/types.js";
import type { CircuitState as DomainCircuitState } from "../../domain/tokens/circuit-breaker.js";
import {
  CircuitState,
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
  /** Of those, the ones without a refresh token. */
  readonly withoutRefreshToken: number;
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
  /** Refresh outcomes at the providers since a time, every replica's. */
  readonly refreshOutcomesSince: (since: Date) => Promise<readonly { provider: string; successes: number; failures: number }[]>;
  /** When the proactive refresher next has work, per provider. */
  readonly nextProactiveRefresh: () => Promise<ReadonlyMap<string, Date>>;
  /** This replica's circuit breakers (providers it has not called are closed). */
  readonly circuitStates: () => ReadonlyMap<string, DomainCircuitState>;
}

const CIRCUIT_STATES: Record<DomainCircuitState, CircuitState> = {
  closed: CircuitState.CLOSED,
  open: CircuitState.OPEN,
  half_open: CircuitState.HALF_OPEN,
};

const HOUR_MS = 3_600_000;

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
      const [counts, outcomes, nextRefresh] = databaseUp
        ? await Promise.all([
            deps.countIntegrations(),
            deps.refreshOutcomesSince(new Date(now.getTime() - HOUR_MS)),
            deps.nextProactiveRefresh(),
          ])
        : [[], [], new Map<string, Date>()];
      const circuits = deps.circuitStates();
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
          refreshSuccessesLastHour: BigInt(outcomes.find((row) => row.provider === provider)?.successes ?? 0),
          refreshFailuresLastHour: BigInt(outcomes.find((row) => row.provider === provider)?.failures ?? 0),
          nextProactiveRefreshTime: nextRefresh.has(provider) ? timestampFromDate(nextRefresh.get(provider) ?? now) : undefined,
          circuitState: CIRCUIT_STATES[circuits.get(provider) ?? "closed"],
          integrationsWithoutRefreshToken: BigInt(
            counts.find((row) => row.provider === provider && row.status === "active")?.withoutRefreshToken ?? 0,
          ),
        })),
        auditChainIntact: databaseUp ? await deps.auditChainIntact() : false,
        draining: deps.isDraining(),
      };
    },
  };
}
