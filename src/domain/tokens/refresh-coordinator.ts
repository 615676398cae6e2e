/**
 * One refresh of an integration at a time: callers in this process share it (single flight);
 * across replicas the lease decides who calls the provider (refresh-lease.ts), and the token
 * write is conditional on the version read, so a stale holder can never overwrite a newer token.
 * The others wait for the holder's write, woken by the change feed or by bounded polling.
 * `invalid_grant` marks the integration NEEDS_REAUTH (oauth-client-security.md §8).
 */
import { BrokerError, isBrokerError } from "../errors.js";
import { integrationNotFound } from "../policy.js";
import { epochMs, type Clock, type TokenChangeFeed, type Logger, type TakenLease, type TokenStore } from "../ports.js";
import type { EncryptedTokenSet, Integration, RequestContext, TokenSet } from "../types.js";
import type { Wakeups } from "./token-waits.js";
import { checkStatus, noRefreshToken, noTokens, operationAbandoned } from "./integration-checks.js";
import type { TokenLifetimes } from "./integration-memory.js";
import type { ProviderCalls } from "./provider-calls.js";
import { refreshCallerOf, type RefreshAudit, type RefreshCaller, type RefreshTrigger } from "./refresh-audit.js";
import type { HeldLease, RefreshLeases } from "./refresh-lease.js";
import { sendRefresh } from "./refresh-sending.js";
import { awaitSentMarkHolder, possiblySpent } from "./refresh-takeover.js";
import type { RotatedTokenCustody } from "./rotated-token-custody.js";
import { createSingleFlight } from "./single-flight.js";
import { validForMs, type CurrentTokens, type StoredTokens } from "./stored-tokens.js";
import type { TokenCache } from "./token-cache.js";

export interface RefreshResult {
  readonly tokens: TokenSet;
  readonly version: number;
  readonly refreshed: boolean;
}

/** What a refresh is asked for: a set valid `minValidForMs`, or a new one regardless (`force`). */
export interface RefreshNeed {
  readonly minValidForMs: number;
  readonly force: boolean;
  readonly trigger: RefreshTrigger;
}

export interface RefreshCoordinator {
  /**
   * The token set current after one refresh of `integration`, whoever refreshed it. `claimed`: a
   * lease this replica took already (the proactive refresher's claim), used instead of a first take.
   */
  refresh(ctx: RequestContext | undefined, integration: Integration, need: RefreshNeed, claimed?: TakenLease): Promise<RefreshResult>;
  /**
   * Gives back a lease this replica may hold for an integration nothing will refresh any more
   * (`latest`: as read now, absent when gone). Inside the single flight, so no refresh of it here
   * runs under the lease meanwhile; never while a rotated refresh token kept here waits for its write.
   */
  releaseIdle(integrationId: string, latest: Integration | undefined): Promise<void>;
}

export interface RefreshCoordinatorDeps {
  readonly store: TokenStore;
  readonly stored: StoredTokens;
  readonly cache: TokenCache;
  readonly leases: RefreshLeases;
  readonly custody: RotatedTokenCustody;
  readonly provider: ProviderCalls;
  readonly audit: RefreshAudit;
  readonly lifetimes: TokenLifetimes;
  readonly wakeups: Wakeups;
  readonly changes: TokenChangeFeed | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  /** A refresh's own deadline: it runs on the broker's clock, not the first caller's. */
  readonly refreshBudgetMs: number;
  /** Told when the integration's grant was refused (its resolved memory is stale). */
  readonly forget: (integrationId: string) => void;
  readonly onLeaseWait?: (() => void) | undefined;
}

/** What a refresh under the lease came to, and the success event still to record once the lease is back. */
interface LeaseOutcome {
  readonly result: RefreshResult;
  readonly audit?: () => Promise<void>;
}

export function createRefreshCoordinator(deps: RefreshCoordinatorDeps): RefreshCoordinator {
  const { store, stored, cache, leases, custody, audit, clock, logger } = deps;
  const validFor = (tokens: TokenSet) => validForMs(tokens, clock);
  // A refresh is abandoned only well past the time its holder may keep the lease without
  // renewing it: a second refresh on this replica while the first may still be at the provider
  // would replay the refresh token.
  const refreshes = createSingleFlight<RefreshResult>({
    abandonAfterMs: 2 * leases.leaseMs + deps.refreshBudgetMs,
    abandoned: operationAbandoned("the refresh"),
    onAbandon: (key) => logger.error({ integrationId: key }, "a shared token operation did not settle in time; its waiters are released"),
  });

  async function coordinated(ctx: RequestContext | undefined, integration: Integration, need: RefreshNeed, claimed: TakenLease | undefined): Promise<RefreshResult> {
    // Waiting outlasts one lease: if its holder died, the lease lapses and this replica takes
    // over. A caller's own deadline still ends its wait sooner (awaitWithin).
    const waitUntil = epochMs(clock) + leases.leaseMs + deps.refreshBudgetMs;
    let seenVersion: number | undefined;
    let awaitedMarkHolder = false;
    for (let attempt = 0; ; attempt++) {
      const acquisition = attempt === 0 && claimed !== undefined ? { acquired: true as const, lease: leases.adopt(integration.id, claimed) } : await leases.acquire(integration.id);
      if (acquisition.acquired && !awaitedMarkHolder && (await handedBackToMarkHolder(integration, acquisition.lease, waitUntil))) {
        awaitedMarkHolder = true;
        seenVersion ??= acquisition.lease.version;
        continue;
      }
      if (acquisition.acquired) return underLease(ctx, integration, need, seenVersion, acquisition.lease);
      if (acquisition.gone && custody.drop(integration.id)) {
        // Deleted: a kept rotated token has nothing left to belong to.
        logger.warn({ integrationId: integration.id }, "the integration is gone; its kept rotated refresh token is dropped");
      }
      // Another replica holds the lease (or the set is gone, which the status check below tells):
      // wait for its write (notification) or poll.
      deps.onLeaseWait?.();
      if (seenVersion === undefined) seenVersion = (await store.tokenSets.get(integration.id))?.version;
      const now = epochMs(clock);
      const remaining = waitUntil - now;
      if (remaining <= 0) {
        throw new BrokerError("provider_unavailable", "the token is being refreshed by another replica and did not arrive in time; retry", {
          retryAfterMs: 500,
          metadata: { integration_id: integration.id },
        });
      }
      const leaseLeft = acquisition.expiresAt ? acquisition.expiresAt.getTime() - now : 0;
      await deps.wakeups.wait(integration.id, Math.max(10, Math.min(remaining, leaseLeft > 0 ? leaseLeft : 50, 50 * 2 ** Math.min(attempt, 5))));
      const fresh = await stored.load(integration.id);
      if (fresh && fresh.version !== seenVersion && validFor(fresh.tokens) >= need.minValidForMs) {
        return { tokens: fresh.tokens, version: fresh.version, refreshed: false };
      }
      const latest = await store.integrations.get(integration.id);
      if (latest) checkStatus(latest);
    }
  }

  /**
   * A lease marked sent by another replica for the current version: its holder may be alive with
   * a rotated token kept in memory, its write waiting for the database (refresh-takeover.ts). The
   * lease goes back (the mark kept) and the holder gets time to store it; whether it went back.
   */
  async function handedBackToMarkHolder(integration: Integration, lease: HeldLease, waitUntil: number): Promise<boolean> {
    const foreignMark = possiblySpent(lease.inheritedMark, lease.version);
    if (foreignMark === undefined || foreignMark.by === leases.replicaId) return false;
    await lease.end(false);
    logger.warn({ integrationId: integration.id, sentBy: foreignMark.by }, "the refresh lease is marked sent by another replica: waiting for its write before trying the stored refresh token");
    await awaitSentMarkHolder({
      waitMs: Math.min(leases.leaseMs + custody.backgroundWriteCapMs, waitUntil - epochMs(clock)),
      settled: async () =>
        (await store.tokenSets.get(integration.id))?.version !== lease.version || (await store.integrations.get(integration.id))?.status !== "active",
      wait: (ms) => deps.wakeups.wait(integration.id, ms),
      now: () => epochMs(clock),
    });
    const latest = await store.integrations.get(integration.id);
    if (latest) checkStatus(latest);
    return true;
  }

  async function underLease(
    ctx: RequestContext | undefined,
    integration: Integration,
    need: RefreshNeed,
    seenVersion: number | undefined,
    lease: HeldLease,
  ): Promise<RefreshResult> {
    const deadline = epochMs(clock) + deps.refreshBudgetMs;
    let outcome: LeaseOutcome;
    try {
      const current = await currentUnderLease(integration, lease).catch((error: unknown) => failRefresh(integration, error));
      // Someone else refreshed while we waited for the lease: use theirs.
      const refreshedMeanwhile = seenVersion !== undefined && current.version !== seenVersion;
      if ((!need.force || refreshedMeanwhile) && validFor(current.tokens) >= need.minValidForMs) {
        cache.set(integration.id, { tokens: current.tokens, version: current.version });
        return { tokens: current.tokens, version: current.version, refreshed: false };
      }
      const by = refreshCallerOf(ctx, need.trigger);
      outcome = await refreshAtProvider(integration, current, by, lease, deadline).catch(async (error: unknown) => ({
        result: await afterFailedRefresh(integration, current.version, by, error),
      }));
    } finally {
      // A kept rotated token keeps the lease too: the stored refresh token is invalidated.
      await lease.end(custody.holds(integration.id));
    }
    // Recorded before the token is handed out: a refresh that cannot be audited fails the call.
    await outcome.audit?.();
    return outcome.result;
  }

  /** The stored set (as the lease was taken: only this holder writes under it), after storing first a rotated one kept here. */
  async function currentUnderLease(integration: Integration, lease: HeldLease): Promise<CurrentTokens> {
    let current: EncryptedTokenSet = lease.tokenSet;
    const kept = custody.kept(integration.id);
    const storedNow = kept ? await custody.storeKept(kept, current) : undefined;
    if (kept && !storedNow) current = (await store.tokenSets.get(integration.id)) ?? current;
    return storedNow ?? (await stored.decrypt(integration.id, current));
  }

  async function refreshAtProvider(integration: Integration, current: CurrentTokens, by: RefreshCaller, lease: HeldLease, deadline: number): Promise<LeaseOutcome> {
    if (!current.refreshToken) throw noRefreshToken(integration, current.tokens.expiresAt);
    const grant = await sendRefresh({ provider: deps.provider, logger }, integration, current.refreshToken, current.version, lease, deadline);
    const tokens: TokenSet = {
      ...grant.tokens,
      // RFC 6749 §6: a refresh response without `scope` keeps the granted scopes.
      scopes: grant.tokens.scopes.length > 0 ? grant.tokens.scopes : current.tokens.scopes,
    };
    deps.lifetimes.learn(integration.id, tokens.expiresAt);
    const rotated = tokens.refreshToken !== undefined;
    const version = await custody.write(integration, current.version, tokens, by);
    if (version === undefined) {
      // Only possible when our lease expired and another replica wrote: theirs is newer.
      logger.warn({ integrationId: integration.id }, "a newer token set was written while refreshing; discarding ours");
      await audit.failed(integration, by, "REFRESH_SUPERSEDED");
      const newer = await stored.load(integration.id);
      if (!newer) throw noTokens(integration.id);
      return { result: { tokens: newer.tokens, version: newer.version, refreshed: false } };
    }
    lease.givenBack();
    const visible: TokenSet = { ...tokens, refreshToken: undefined };
    cache.set(integration.id, { tokens: visible, version });
    logger.info({ integrationId: integration.id, provider: integration.provider, rotated }, "token refreshed");
    return { result: { tokens: visible, version, refreshed: true }, audit: () => audit.refreshed(integration, by, { rotated: String(rotated) }) };
  }

  /** A refused grant may only mean our refresh token was stale; anything else is the caller's failure. */
  async function afterFailedRefresh(integration: Integration, usedVersion: number, by: RefreshCaller, error: unknown): Promise<RefreshResult> {
    if (isBrokerError(error, "integration_needs_reauth")) {
      // A replica whose lease had lapsed may have stored a rotated token meanwhile: then our
      // refresh token was simply stale, and the grant is alive.
      const latest = await store.tokenSets.get(integration.id);
      if (latest && latest.version !== usedVersion) {
        await audit.failed(integration, by, "REFRESH_SUPERSEDED", { cause: "stale_refresh_token" });
        const newer = await stored.decrypt(integration.id, latest);
        cache.set(integration.id, { tokens: newer.tokens, version: newer.version });
        return { tokens: newer.tokens, version: newer.version, refreshed: false };
      }
    }
    // A kept rotated token records its event once its write lands or is given up.
    if (!custody.holds(integration.id)) await audit.failedWith(integration, by, error);
    return failRefresh(integration, error);
  }

  async function failRefresh(integration: Integration, error: unknown): Promise<never> {
    const code = isBrokerError(error) ? error.code : "internal";
    if (code === "integration_needs_reauth") {
      const reason = isBrokerError(error) ? (error.metadata["error"] ?? error.reason).toLowerCase() : "invalid_grant";
      await store.integrations.markNeedsReauth(integration.id, reason);
      cache.evict(integration.id);
      deps.forget(integration.id);
      await deps.changes?.publish({ integrationId: integration.id, version: 0 }).catch((e: unknown) => logger.warn({ err: e }, "could not announce the refused grant"));
      logger.warn({ integrationId: integration.id, provider: integration.provider, reason }, "the provider refused the grant: integration needs re-authorization");
      checkStatus({ ...integration, status: "needs_reauth", statusReason: reason });
    }
    if (code === "provider_misconfigured") {
      logger.error({ integrationId: integration.id, provider: integration.provider }, "ALERT: configuration alarm: the provider rejected the broker's client credentials (invalid_client)");
    } else if (code === "provider_unavailable" || code === "provider_rate_limited" || code === "provider_error") {
      const retryAfter = isBrokerError(error) ? (error.retryAfterMs ?? 30_000) : 30_000;
      await store.integrations
        .recordRefreshFailure(integration.id, code, new Date(epochMs(clock) + retryAfter))
        .catch((e: unknown) => logger.warn({ err: e }, "could not record the refresh failure"));
    }
    throw error;
  }

  return {
    refresh(ctx, integration, need, claimed) {
      // A refresh already running here holds the same lease (the owner is the replica): the claim joins it.
      return refreshes.run(integration.id, () => coordinated(ctx, integration, need, claimed));
    },
    async releaseIdle(integrationId, latest) {
      await refreshes
        .run(integrationId, async () => {
          if (!custody.holds(integrationId)) await leases.release(integrationId);
          // Callers that joined meanwhile learn why nothing refreshes it.
          if (latest) checkStatus(latest);
          throw integrationNotFound(integrationId);
        })
        .catch(() => undefined);
    },
  };
}
