/**
 * DeleteIntegration: revoke the grant at the provider, erase the tokens, keep a tombstone.
 *
 * Order matters. The refresh lease is taken first, so no refresh is in flight and none starts:
 * the token revoked is the latest one (a rotated refresh token that landed a moment ago included).
 * The tombstone, the erasure and a pending-revocation row are then written in one transaction,
 * so a crash before the provider answers leaves the revocation queued, never forgotten. The
 * revocation is attempted at once; a 503, a timeout or an unreachable key service leaves it to
 * the retry job (RFC 7009 §2.2.1), bounded in attempts and age.
 */
import { BrokerError, isBrokerError } from "./errors.js";
import {
  auditCaller,
  auditSubject,
  epochMs,
  type AuditLog,
  type Cipher,
  type Clock,
  type DeletionStore,
  type Logger,
  type PendingRevocation,
  type ProviderClients,
} from "./ports.js";
import type { Integration, RequestContext } from "./types.js";
import { sleep } from "./waiting.js";

export type { DeletionStore, PendingRevocation, RevocationQueue } from "./ports.js";
/** The deletion's logger: the domain's logger port. */
export type DeletionLogger = Logger;

export type DeletionRevocation = "revoked" | "not_supported" | "pending" | "already_deleted";

export interface IntegrationDeletionDeps {
  readonly store: DeletionStore;
  readonly cipher: Cipher;
  readonly providers: ProviderClients;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly replicaId: string;
  /** Drops cached copies here and on the other replicas. */
  readonly onDeleted: (integrationId: string) => void;
  readonly settings: {
    readonly leaseMs: number;
    /** The longest a live refresh holder keeps renewing its lease (lease-heartbeat.ts `refreshBudget`). */
    readonly holdLimitMs: number;
    /** Attempts before a revocation is given up (and alarmed). */
    readonly maxAttempts: number;
    /** Age after which a revocation is given up whatever its attempts. */
    readonly giveUpAfterMs: number;
  };
}

export interface IntegrationDeletion {
  delete(ctx: RequestContext, integration: Integration): Promise<{ integration: Integration; revocation: DeletionRevocation }>;
  /** One pass of the retry job; returns how many revocations it attempted. */
  retryDue(limit?: number): Promise<number>;
}

type AttemptResult = { readonly outcome: "revoked" | "not_supported" } | { readonly outcome: "retry"; readonly retryAfterMs: number; readonly error: string };

const FIRST_RETRY_MS = 30_000;
/** How long one attempt may hold a pending revocation before the retry job may take it. */
const REVOCATION_CLAIM_MS = 120_000;
const MAX_RETRY_MS = 6 * 3_600_000;

export function createIntegrationDeletion(deps: IntegrationDeletionDeps): IntegrationDeletion {
  const { store, logger } = deps;
  const owner = `${deps.replicaId}/delete`;

  /**
   * Waits out a refresh in flight. Its holder renews the lease while the refresh runs, its write
   * retries included (at most `holdLimitMs`), so the wait is bounded by that plus one lease: a
   * holder that died stops renewing and its lease lapses within one lease period. Giving up
   * sooner would erase the tokens under a live refresh whose rotated token nobody then revokes.
   */
  async function takeLease(integrationId: string): Promise<boolean> {
    const giveUpAt = Date.now() + deps.settings.leaseMs + deps.settings.holdLimitMs + 1_000;
    for (let attempt = 0; ; attempt++) {
      const lease = await store.tokenSets.acquireLease(integrationId, owner, deps.settings.leaseMs);
      if (lease.acquired) return true;
      if (lease.expiresAt === undefined || Date.now() >= giveUpAt) return false;
      const untilExpiry = lease.expiresAt.getTime() - epochMs(deps.clock);
      await sleep(Math.max(5, Math.min(25 * 2 ** Math.min(attempt, 5), untilExpiry, giveUpAt - Date.now())));
    }
  }

  async function attempt(revocation: Omit<PendingRevocation, "attempts" | "createdAt" | "userId">): Promise<AttemptResult> {
    const client = deps.providers.get(revocation.provider);
    // A provider removed from the configuration: nothing left that could revoke.
    if (!client) return { outcome: "not_supported" };
    try {
      const token = await deps.cipher.decrypt({ ciphertext: revocation.tokenCiphertext, context: revocation.integrationId });
      const result = await client.revoke(token, revocation.hint);
      if (result.outcome === "retry_later") return { outcome: "retry", retryAfterMs: result.retryAfterMs, error: "provider_unavailable" };
      return { outcome: result.outcome };
    } catch (error) {
      // Permanent refusals (invalid_client, a bad request) are retried too: a configuration fix
      // lets them through, and the attempt budget bounds the rest.
      return { outcome: "retry", retryAfterMs: FIRST_RETRY_MS, error: isBrokerError(error) ? error.code : "internal" };
    }
  }

  function nextDelay(attempts: number, retryAfterMs: number): number {
    const exponential = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** attempts);
    return Math.max(retryAfterMs, exponential * (0.5 + Math.random() / 2));
  }

  async function recordRevocation(
    revocation: { integrationId: string; userId: string; provider: string },
    outcome: "revoked" | "deferred" | "abandoned",
    ctx: RequestContext | undefined,
    details: Record<string, string>,
  ): Promise<void> {
    const action = outcome === "revoked" ? "integration.revoked" : outcome === "deferred" ? "integration.revocation_deferred" : "integration.revocation_abandoned";
    await deps.audit.record({
      action,
      outcome: outcome === "revoked" ? "success" : "failure",
      reason: details["error"] ?? "",
      // The retry job acts for nobody: the broker itself.
      ...(ctx ? auditCaller(ctx) : { caller: "broker", callerKind: "system" }),
      ...auditSubject({ id: revocation.integrationId, userId: revocation.userId, provider: revocation.provider }),
      details,
    });
  }

  /** Applies an attempt's result to the queue; returns what the caller is told. */
  async function settle(
    revocation: Omit<PendingRevocation, "createdAt">,
    result: AttemptResult,
    age: number,
    ctx: RequestContext | undefined,
  ): Promise<"revoked" | "not_supported" | "pending"> {
    if (result.outcome !== "retry") {
      await store.revocations.complete(revocation.integrationId);
      if (result.outcome === "revoked") await recordRevocation(revocation, "revoked", ctx, { attempts: String(revocation.attempts + 1) });
      return result.outcome;
    }
    const attempts = revocation.attempts + 1;
    if (attempts >= deps.settings.maxAttempts || age >= deps.settings.giveUpAfterMs) {
      await store.revocations.complete(revocation.integrationId);
      logger.error(
        { integrationId: revocation.integrationId, provider: revocation.provider, attempts, error: result.error },
        "ALERT: revocation at the provider given up; the grant may still be valid there (ask the user to remove the app's access)",
      );
      await recordRevocation(revocation, "abandoned", ctx, { attempts: String(attempts), error: result.error });
      return "pending";
    }
    const next = new Date(epochMs(deps.clock) + nextDelay(revocation.attempts, result.retryAfterMs));
    await store.revocations.reschedule(revocation.integrationId, next, result.error);
    logger.warn(
      { integrationId: revocation.integrationId, provider: revocation.provider, attempts, error: result.error, nextAttemptAt: next },
      "revocation at the provider deferred; it is retried later",
    );
    await recordRevocation(revocation, "deferred", ctx, { attempts: String(attempts), error: result.error, next_attempt_at: next.toISOString() });
    return "pending";
  }

  return {
    async delete(ctx, integration) {
      const leased = await takeLease(integration.id);
      let deleted: Awaited<ReturnType<DeletionStore["integrations"]["markDeleted"]>>;
      try {
        deleted = await store.integrations.markDeleted(integration.id, `deleted by ${ctx.principal.subject}`, {
          queueRevocation: true,
          claimMs: REVOCATION_CLAIM_MS,
        });
      } finally {
        // The lease lived in the erased token set; release only when the delete did not happen.
        if (leased && !deleted) await store.tokenSets.releaseLease(integration.id, owner).catch(() => undefined);
      }
      if (!deleted) throw new BrokerError("not_found", `integration ${integration.id} does not exist`, { reason: "INTEGRATION_NOT_FOUND" });
      deps.onDeleted(integration.id);

      const revocation = deleted.revocation;
      let outcome: DeletionRevocation = deleted.alreadyDeleted ? "already_deleted" : "not_supported";
      if (revocation && !deleted.alreadyDeleted) {
        const pending = { ...revocation, integrationId: integration.id, userId: integration.userId, provider: integration.provider, attempts: 0 };
        outcome = await settle(pending, await attempt(pending), 0, ctx);
      }
      await deps.audit.record({
        action: "integration.deleted",
        outcome: "success",
        ...auditCaller(ctx),
        ...auditSubject(integration),
        details: { revocation: outcome },
      });
      logger.info({ integrationId: integration.id, provider: integration.provider, revocation: outcome }, "integration deleted");
      return { integration: deleted.integration, revocation: outcome };
    },

    async retryDue(limit = 20) {
      const due = await store.revocations.claimDue(limit, REVOCATION_CLAIM_MS);
      for (const revocation of due) {
        const age = epochMs(deps.clock) - revocation.createdAt.getTime();
        await settle(revocation, await attempt(revocation), age, undefined).catch((error: unknown) =>
          logger.warn({ err: error, integrationId: revocation.integrationId }, "could not settle a pending revocation; it is retried later"),
        );
      }
      return due.length;
    },
  };
}
