/**
 * Wiring of the domain services: the token lifecycle, integration deletion and sync, and the
 * authorization flow, each over the storage, key service and provider ports it needs.
 */
import type { Cipher } from "../domain/ports.js";
import { createAuthorizationService } from "../domain/authorization-service.js";
import type { AuthorizationService } from "../domain/authorization-types.js";
import { createIntegrationDeletion, type IntegrationDeletion } from "../domain/integration-deletion.js";
import { createIntegrationSync, type IntegrationSync } from "../domain/integration-sync.js";
import type { RateLimiter } from "../domain/rate-limiter.js";
import { refreshBudget } from "../domain/tokens/lease-heartbeat.js";
import { createTokenService, type TokenService } from "../domain/tokens/token-service.js";
import type { Metrics } from "../observability/metrics.js";
import type { DatabaseHealth } from "../storage/database-health.js";
import { enforceStartAuthorizationLimit } from "../transport/interceptors/rate-limit.js";
import type { LiveSettings } from "./live-settings.js";
import type { Providers } from "./providers.js";
import type { Auditing, Storage, TokenFeeds } from "./storage.js";
import { tokenWaitLimitMs, type Wiring } from "./wiring.js";

/** A revocation the provider keeps refusing is given up (and alarmed) after this many attempts or this age. */
const REVOCATION_MAX_ATTEMPTS = 12;
const REVOCATION_GIVE_UP_MS = 7 * 86_400_000;

export interface TokenServiceParts {
  readonly storage: Storage;
  readonly cipher: Cipher;
  readonly providers: Providers;
  readonly auditing: Auditing;
  readonly feeds: TokenFeeds;
  readonly databaseHealth: DatabaseHealth;
  readonly metrics: Metrics;
}

export function openTokenService({ config, logger, clock, closers, replicaId }: Wiring, parts: TokenServiceParts): TokenService {
  const { storage, metrics } = parts;
  const tokenService = createTokenService({
    store: { integrations: storage.integrations, tokenSets: storage.tokenSets },
    cipher: parts.cipher,
    providers: parts.providers.registry,
    clock,
    logger,
    replicaId,
    changes: parts.feeds.notifications,
    pauseFeed: parts.feeds.providerPauses,
    audit: parts.auditing.audit,
    settings: {
      cacheMaxEntries: config.tokens.cacheMaxEntries,
      leaseSeconds: config.tokens.leaseSeconds,
      providerPause: { maxPauseMs: config.tokens.providerPauseMaxSeconds * 1000, backoffCapMs: config.tokens.rateLimitBackoffMaxSeconds * 1000 },
      databaseCallTimeoutMs: config.databaseCallTimeoutMs,
      maxWaitMs: tokenWaitLimitMs(config),
    },
    database: parts.databaseHealth,
    events: {
      cache: (hit) => metrics.tokenCacheRequests.inc({ result: hit ? "hit" : "miss" }),
      refresh: (provider, result, seconds) => {
        metrics.tokenRefreshes.inc({ provider, result });
        metrics.tokenRefreshSeconds.observe({ provider }, seconds);
      },
      leaseWait: () => metrics.leaseWaits.inc(),
      circuit: (provider, state) => metrics.setCircuitState(provider, state),
      providerPause: (provider) => metrics.providerPauses.inc({ provider }),
    },
  });
  closers.add("token service", async () => tokenService.close());
  return tokenService;
}

export interface DomainServiceParts {
  readonly storage: Storage;
  readonly cipher: Cipher;
  readonly providers: Providers;
  readonly auditing: Auditing;
  readonly feeds: TokenFeeds;
  readonly tokenService: TokenService;
  readonly live: LiveSettings;
  readonly limiter: RateLimiter;
}

export interface DomainServices {
  readonly deletion: IntegrationDeletion;
  readonly sync: IntegrationSync;
  readonly authorization: AuthorizationService;
}

export function createDomainServices({ config, logger, clock, replicaId }: Wiring, parts: DomainServiceParts): DomainServices {
  const { storage, cipher, tokenService, live, limiter } = parts;
  const providers = parts.providers.registry;
  const { audit } = parts.auditing;
  const deletion = createIntegrationDeletion({
    store: { tokenSets: storage.tokenSets, integrations: storage.integrations, revocations: storage.revocations },
    cipher,
    providers,
    audit,
    clock,
    logger,
    replicaId,
    // Other replicas learn of it from the delete's own transaction (NOTIFY on commit).
    onDeleted: (id) => tokenService.evict(id),
    settings: {
      leaseMs: config.tokens.leaseSeconds * 1000,
      // Same settings as the token service's: how long one of its refreshes may keep the lease.
      holdLimitMs: refreshBudget({ databaseCallTimeoutMs: config.databaseCallTimeoutMs }).holdLimitMs,
      maxAttempts: REVOCATION_MAX_ATTEMPTS,
      giveUpAfterMs: REVOCATION_GIVE_UP_MS,
    },
  });
  const sync = createIntegrationSync({ store: storage.integrations, tokenService, providers, audit, logger });
  const authorization = createAuthorizationService({
    providers: { list: () => providers.profiles(), client: (id) => providers.get(id), redirectUri: (id) => providers.redirectUri(id) },
    policy: () => live.current().policy,
    sessions: storage.sessions,
    integrations: storage.integrations,
    cipher,
    audit,
    settings: () => live.current().authorization,
    publicUrl: config.publicUrl,
    clock,
    limitStart: (userId) => enforceStartAuthorizationLimit(limiter, live.current().limits.startAuthorizationPerUser, userId),
    logger,
    onIntegrationChanged: (id) => {
      tokenService.evict(id);
      void parts.feeds.notifications.publish({ integrationId: id, version: 0 });
    },
  });
  return { deletion, sync, authorization };
}
