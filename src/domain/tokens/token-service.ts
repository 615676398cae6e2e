/**
 * Valid access tokens, refreshed just in time, once per expiry: the facade of the token
 * lifecycle over the modules of this folder.
 *
 * Hot path: the in-process cache; on a miss, PostgreSQL + one batch decrypt (single-flighted,
 * stored-tokens.ts). When the token would not last `minValidFor`, one refresh runs, coordinated
 * across replicas (refresh-coordinator.ts) and sent through the provider's breaker and pause
 * (provider-calls.ts); a rotated refresh token the database would not take stays in custody
 * (rotated-token-custody.ts). Every refresh, by a caller or the proactive refresher, leaves
 * exactly one audit event (refresh-audit.ts). A token handed out is audited once per caller,
 * token version and scope set, its repeats counted (disclosures.ts).
 *
 * When a provider's tokens live shorter than a caller's `min_valid_for`, the lifetime seen at the
 * last refresh answers TOKEN_LIFETIME_TOO_SHORT at once instead of refreshing on every call.
 */
import { epochMs, type TokenStore } from "../ports.js";
import type { TokenSet } from "../types.js";
import { awaitWithin, createWakeups } from "./token-waits.js";
import { boundDatabaseCalls, withinDatabaseBound } from "../database-bound.js";
import { checkScopes, lifetimeTooShort, noTokens, operationAbandoned } from "./integration-checks.js";
import { createTokenLifetimes } from "./integration-memory.js";
import { createIntegrationResolver } from "./integration-resolution.js";
import { createDisclosureLedger } from "./disclosures.js";
import { createLastUse } from "./last-use.js";
import { refreshBudget } from "./lease-heartbeat.js";
import { createProviderCalls } from "./provider-calls.js";
import { createRefreshAudit } from "./refresh-audit.js";
import { createRefreshCoordinator } from "./refresh-coordinator.js";
import { createRefreshLeases } from "./refresh-lease.js";
import { createRotatedTokenCustody, type UnstoredRefresh } from "./rotated-token-custody.js";
import { createSingleFlight } from "./single-flight.js";
import { createStoredTokens, validForMs, withoutRefreshToken, type CurrentTokens } from "./stored-tokens.js";
import { createTokenCache } from "./token-cache.js";
import type { TokenService, TokenServiceDeps } from "./token-service-api.js";

export type { IssuedToken, TokenService, TokenServiceDeps } from "./token-service-api.js";
export type { TokenSelector } from "./integration-resolution.js";

const MAX_WAIT_MS = 30_000;
/**
 * How long the token lifetime seen at a refresh is trusted to refuse a longer `min_valid_for`
 * without asking the provider; afterwards one refresh learns it again (the provider may change it).
 */
const LIFETIME_MEMORY_MS = 15 * 60_000;

export function createTokenService(deps: TokenServiceDeps): TokenService {
  const { clock, logger, settings } = deps;
  // No wait on the database outlasts its bound (issue 17: a cut wedged calls for good).
  const budget = refreshBudget(settings);
  const databaseMs = budget.databaseCallMs;
  const maxWaitMs = settings.maxWaitMs ?? MAX_WAIT_MS;
  const store: TokenStore = {
    integrations: boundDatabaseCalls(deps.store.integrations, "integrations", databaseMs, deps.database),
    tokenSets: boundDatabaseCalls(deps.store.tokenSets, "tokenSets", databaseMs, deps.database),
  };
  const changes = deps.changes && boundDatabaseCalls(deps.changes, "changes", databaseMs);
  const audit = deps.audit && boundDatabaseCalls(deps.audit, "audit", databaseMs, deps.database);
  const refreshAudit = createRefreshAudit({ audit, logger });
  // Unbounded: a count written late is still written once; a caller's wait for a record is bounded in tokenFor.
  const disclosures = deps.audit && createDisclosureLedger({ audit: deps.audit, logger, maxKeys: settings.disclosureMaxKeys ?? 2 * settings.cacheMaxEntries });
  const cache = createTokenCache(settings.cacheMaxEntries);
  const stored = createStoredTokens({ store, cipher: deps.cipher, cache });
  const abandonShared = (fields: Record<string, string>) => logger.error(fields, "a shared token operation did not settle in time; its waiters are released");
  const resolver = createIntegrationResolver({
    integrations: store.integrations,
    clock,
    maxEntries: settings.cacheMaxEntries,
    lookups: { abandonAfterMs: maxWaitMs, abandoned: operationAbandoned("looking up the integration"), onAbandon: (key) => abandonShared({ lookup: key.replaceAll("\u0000", "/") }) },
  });
  const lifetimes = createTokenLifetimes({ maxEntries: settings.cacheMaxEntries, trustMs: LIFETIME_MEMORY_MS, clock });
  const touch = createLastUse({ integrations: store.integrations, clock, logger, maxEntries: settings.cacheMaxEntries });
  const wakeups = createWakeups();
  const provider = createProviderCalls({ providers: deps.providers, clock, logger, pauseFeed: deps.pauseFeed, settings, events: deps.events });
  const leaseMs = settings.leaseSeconds * 1000;
  const leases = createRefreshLeases({ store, replicaId: deps.replicaId, leaseMs, heartbeatMs: Math.max(10, settings.leaseHeartbeatMs ?? leaseMs / 3),
    holdLimitMs: budget.holdLimitMs,
    logger,
  });
  // Any stored token is good enough for a kept set's write: the point is the write, not a fresh token.
  const flush = (pending: UnstoredRefresh) =>
    coordinator.refresh(undefined, pending.integration, { minValidForMs: Number.NEGATIVE_INFINITY, force: false, trigger: pending.by.trigger });
  const custody = createRotatedTokenCustody({ store, stored, leases, cache, audit: refreshAudit, logger, budget, flush });
  const coordinator = createRefreshCoordinator({
    store,
    stored,
    cache,
    leases,
    custody,
    provider,
    audit: refreshAudit,
    lifetimes,
    wakeups,
    changes,
    clock,
    logger,
    // Its holder renews the lease meanwhile (heartbeat), so the budget need not fit in one lease;
    // a takeover while the holder's renewals fail finds the lease's "sent" mark and does not blindly replay.
    refreshBudgetMs: budget.refreshMs,
    forget: (integrationId) => resolver.forget(integrationId),
    onLeaseWait: () => deps.events?.leaseWait?.(),
  });
  // A load has no side effects: abandoning it early is harmless.
  const loads = createSingleFlight<CurrentTokens | undefined>({
    abandonAfterMs: maxWaitMs,
    abandoned: operationAbandoned("reading the token set"),
    onAbandon: (key) => abandonShared({ integrationId: key }),
  });
  const validFor = (tokens: TokenSet) => validForMs(tokens, clock);

  const unsubscribe = deps.changes?.subscribe((change) => {
    cache.evict(change.integrationId, change.version || Number.MAX_SAFE_INTEGER);
    // Version 0: replaced by a version not named (a re-authorization).
    disclosures?.replaced(change.integrationId, change.version || undefined);
    resolver.forget(change.integrationId);
    wakeups.wake(change.integrationId);
  });

  return {
    resolve: (selector, authorize) => resolver.resolve(selector, authorize),
    resolveWarm: (selector, authorize) => resolver.resolveWarm(selector, authorize),

    async tokenFor(ctx, integration, minValidForMs, requiredScopes, options) {
      checkScopes(integration, requiredScopes);
      let now = epochMs(clock);
      const cached = cache.get(integration.id, now);
      let tokens = cached?.tokens;
      let version = cached?.version ?? 0;
      deps.events?.cache?.(tokens !== undefined && tokens.expiresAt.getTime() - now >= minValidForMs);
      if (!tokens || tokens.expiresAt.getTime() - now < minValidForMs) {
        const loaded = await awaitWithin(loads.run(integration.id, () => stored.load(integration.id)), ctx, maxWaitMs, clock);
        if (!loaded) throw noTokens(integration.id);
        ({ tokens, version } = loaded);
        // A refresh this caller joins may have been started for a shorter min_valid_for: check
        // the result against this caller's own need and refresh again once if it falls short.
        for (let round = 0; round < 2 && validFor(tokens) < minValidForMs; round++) {
          // No refresh can help when the provider's tokens live shorter than asked for.
          const lifetime = lifetimes.known(integration.id);
          if (lifetime !== undefined && lifetime < minValidForMs) throw lifetimeTooShort(integration, lifetime, minValidForMs);
          // A paused provider is answered before any lease or write (a kept rotated token still gets stored).
          if (!custody.holds(integration.id)) provider.checkPause(integration.provider);
          const refreshing = coordinator.refresh(ctx, integration, { minValidForMs, force: false, trigger: "expiring" });
          ({ tokens, version } = await awaitWithin(refreshing, ctx, maxWaitMs, clock));
        }
        now = epochMs(clock);
      }
      if (validFor(tokens) < minValidForMs) {
        const lifetime = lifetimes.known(integration.id);
        throw lifetimeTooShort(integration, lifetime !== undefined && lifetime < minValidForMs ? lifetime : validFor(tokens), minValidForMs);
      }
      const handedOut = withoutRefreshToken(tokens);
      if (options?.internal) return { tokens: handedOut, integration };
      const recording = disclosures?.disclose(ctx, integration, version, requiredScopes, now);
      // A first disclosure: answered once its record is durable, within the bound of any database wait.
      if (recording !== undefined) await withinDatabaseBound(recording, databaseMs, "write the audit record", deps.database);
      touch(integration);
      return { tokens: handedOut, integration };
    },

    warmTokenFor(principal, integration, minValidForMs, requiredScopes) {
      // Only a call tokenFor would answer at once, with no wait, write or refresh: the same checks
      // in the same order, and the same counts once the caller commits.
      try {
        checkScopes(integration, requiredScopes);
      } catch {
        return undefined;
      }
      const now = epochMs(clock);
      const cached = cache.get(integration.id, now);
      if (cached === undefined || cached.tokens.expiresAt.getTime() - now < minValidForMs || validFor(cached.tokens) < minValidForMs) return undefined;
      const repeat = disclosures?.repeatOf(principal, integration.id, cached.version, requiredScopes);
      if (disclosures !== undefined && repeat === undefined) return undefined;
      const issued = { tokens: withoutRefreshToken(cached.tokens), integration };
      return {
        issued,
        commit(ctx) {
          deps.events?.cache?.(true);
          repeat?.(ctx, now);
          touch(integration);
        },
      };
    },

    async refreshNow(ctx, integrationId) {
      const integration = await resolver.resolve({ integrationId });
      if (!custody.holds(integration.id)) provider.checkPause(integration.provider);
      const refreshing = coordinator.refresh(ctx, integration, { minValidForMs: 0, force: true, trigger: "forced" });
      const result = await awaitWithin(refreshing, ctx, maxWaitMs, clock);
      const latest = (await store.integrations.get(integration.id)) ?? integration;
      return { integration: latest, refreshed: result.refreshed };
    },

    async refreshAhead({ integration, lease }, withinMs) {
      // The claim read the row in the statement that took the lease. A second read here would
      // only narrow, not close, the window in which a deletion races the provider call; a deletion
      // erases the token set, so the refresh's write finds nothing to replace (integration-repository.ts).
      if (integration.status !== "active") {
        // Nothing will refresh it, so the claim's lease goes back now (unless a refresh here runs under it).
        await coordinator.releaseIdle(integration.id, integration);
        return false;
      }
      // Same rule as the claim: a token living shorter than the window is refreshed at half-life.
      const lifetime =
        integration.accessTokenExpiresAt && integration.lastRefreshedAt
          ? integration.accessTokenExpiresAt.getTime() - integration.lastRefreshedAt.getTime()
          : withinMs * 2;
      const result = await coordinator.refresh(undefined, integration, { minValidForMs: Math.min(withinMs, lifetime / 2), force: false, trigger: "proactive" }, lease);
      return result.refreshed;
    },

    evict(integrationId) {
      cache.evict(integrationId);
      disclosures?.replaced(integrationId);
      resolver.forget(integrationId);
      lifetimes.forget(integrationId);
    },

    circuitStates: () => provider.circuitStates(),
    providerPauses: () => provider.paused(),

    flushDisclosures: () => disclosures?.flush() ?? Promise.resolve(),

    async close() {
      unsubscribe?.();
      provider.close();
      await custody.close();
      // Before the audit log closes (the broker closes it after the token service).
      await disclosures?.flush().catch((error: unknown) => logger.error({ err: error }, "repeated token disclosures counted since the last pass could not be written at shutdown"));
    },
  };
}
