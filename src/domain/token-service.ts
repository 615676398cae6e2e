/**
 * Valid access tokens, refreshed just in time, once per expiry.
 *
 * Hot path: the in-process cache; on a miss, PostgreSQL + one batch decrypt (single-flighted).
 * When the token would not last `minValidFor`, one refresh runs: callers in this process share
 * it (single flight); across replicas a lease row decides who calls the provider, and the token
 * write is conditional on the version read, so a stale holder can never overwrite a newer token.
 * Waiters learn of the new token through LISTEN/NOTIFY or bounded polling.
 *
 * A rotated refresh token is written together with the access token before anyone sees the new
 * access token (oauth-client-security.md §7). A failed write is retried from memory; when the
 * database stays away longer, the set is kept in memory on this replica together with the lease,
 * the write goes on in the background and an ALERT is logged: the rotated token is never dropped,
 * and this replica's next refresh of the integration starts from it. `invalid_grant` marks the
 * integration NEEDS_REAUTH (§8). Every refresh, by a caller or the proactive refresher, leaves
 * exactly one audit event (`token.refreshed` or `token.refresh_failed`).
 *
 * When a provider's tokens live shorter than a caller's `min_valid_for`, the lifetime seen at the
 * last refresh answers TOKEN_LIFETIME_TOO_SHORT at once instead of refreshing on every call.
 */
import { randomUUID } from "node:crypto";
import { BrokerError, isBrokerError } from "./errors.js";
import { integrationNotFound } from "./policy.js";
import { createCircuitBreaker, type CircuitBreaker, type CircuitState } from "./circuit-breaker.js";
import { auditCaller, auditSubject, type AuditLog, type Cipher, type Clock, type ProviderClient } from "./ports.js";
import { createSingleFlight } from "./single-flight.js";
import { createTokenCache } from "./token-cache.js";
import { checkScopes, checkStatus, lifetimeTooShort, noRefreshToken } from "./integration-checks.js";
import { createResolvedIntegrations, createTokenLifetimes } from "./integration-memory.js";
import { awaitWithin, createWakeups, fullJitterBackoff, sleep } from "./waiting.js";
import { startLeaseHeartbeat } from "./lease-heartbeat.js";
import { createProviderPauses, type ProviderPauseNotice } from "./provider-pause.js";
import { possiblySpent, rotatedTokenLost, type RefreshSentMark } from "./refresh-takeover.js";
import { boundDatabaseCalls, type DatabaseOutcomes } from "./database-bound.js";
import type { EncryptedTokenSet, Integration, RequestContext, TokenSet } from "./types.js";

/** What the token service needs from storage (the postgres.js repositories satisfy it). */
export interface TokenStore {
  readonly integrations: {
    get(id: string): Promise<Integration | undefined>;
    findForUser(userId: string, provider: string, externalAccountId?: string): Promise<readonly Integration[]>;
    markNeedsReauth(id: string, reason: string): Promise<void>;
    recordRefreshFailure(id: string, reason: string, nextAttemptAt: Date): Promise<void>;
    touchLastUsed(id: string, at: Date): Promise<void>;
  };
  readonly tokenSets: {
    get(integrationId: string): Promise<EncryptedTokenSet | undefined>;
    writeIfVersion(
      integrationId: string,
      expectedVersion: number,
      tokens: {
        accessTokenCiphertext: string;
        refreshTokenCiphertext: string | null;
        tokenType: string;
        expiresAt: Date;
        scopes: readonly string[];
      },
    ): Promise<number | undefined>;
    acquireLease(
      integrationId: string,
      owner: string,
      ttlMs: number,
    ): Promise<{ acquired: true; version: number; sent?: RefreshSentMark | undefined } | { acquired: false; expiresAt: Date | undefined }>;
    /** `keepSentMark`: the outcome of the refresh request sent under the lease is unknown. */
    releaseLease(integrationId: string, owner: string, options?: { readonly keepSentMark?: boolean }): Promise<void>;
    /** The heartbeat; false when the lease is no longer `owner`'s. */
    renewLease(integrationId: string, owner: string, ttlMs: number): Promise<boolean>;
    /** Records that `owner` sends the refresh token of `version` now; false when the lease is not `owner`'s. */
    markRefreshSent(integrationId: string, owner: string, version: number): Promise<boolean>;
  };
}

/** Provider pauses shared across replicas (LISTEN/NOTIFY). */
export interface ProviderPauseFeed {
  publish(notice: ProviderPauseNotice): Promise<void>;
  subscribe(listener: (notice: ProviderPauseNotice) => void): () => void;
}

/** Cross-replica change feed (LISTEN/NOTIFY). */
export interface TokenChangeFeed {
  publish(change: { integrationId: string; version: number }): Promise<void>;
  subscribe(listener: (change: { integrationId: string; version: number }) => void): () => void;
}

export interface TokenServiceLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface TokenServiceDeps {
  readonly store: TokenStore;
  readonly cipher: Cipher;
  readonly providers: { get(id: string): ProviderClient | undefined };
  readonly clock: Clock;
  readonly logger: TokenServiceLogger;
  /** Unique per replica: the lease owner. */
  readonly replicaId: string;
  readonly changes?: TokenChangeFeed | undefined;
  readonly pauseFeed?: ProviderPauseFeed | undefined;
  readonly audit?: AuditLog | undefined;
  readonly settings: {
    readonly cacheMaxEntries: number;
    readonly leaseSeconds: number;
    /** How often a lease holder renews its lease (default: a third of the lease). */
    readonly leaseHeartbeatMs?: number;
    /** Rate-limited providers: the longest pause obeyed, and the cap of the backoff without Retry-After. */
    readonly providerPause?: { readonly maxPauseMs: number; readonly backoffCapMs: number };
    /** When a caller sets no deadline, a refresh may take this long. */
    readonly defaultDeadlineMs?: number;
    readonly breakerFailureThreshold?: number;
    readonly breakerCooldownMs?: number;
    /**
     * Storing a refreshed set: `attempts` (5) while the caller waits, with waits growing from
     * `baseMs` (200) to `capMs` (2 000); a rotated refresh token is then retried in the background.
     */
    readonly writeRetry?: { readonly attempts?: number; readonly baseMs?: number; readonly capMs?: number };
    /** Bound on each database call and audit commit (`database.callTimeoutMs`); default 1 000. */
    readonly databaseCallTimeoutMs?: number;
    /** Longest a call waits for a token when it set no shorter deadline (`tokens.maxWaitSeconds`); default 30 000. */
    readonly maxWaitMs?: number;
  };
  /** Told of each database call's outcome (readiness learns of an outage from them). */
  readonly database?: DatabaseOutcomes | undefined;
  /** Observability hooks (metrics). */
  readonly events?: {
    cache?(hit: boolean): void;
    refresh?(provider: string, result: string, seconds: number): void;
    leaseWait?(): void;
    circuit?(provider: string, state: CircuitState): void;
    providerPause?(provider: string, seconds: number): void;
  };
}

export interface TokenSelector {
  readonly integrationId?: string | undefined;
  readonly userId?: string | undefined;
  readonly provider?: string | undefined;
  readonly externalAccountId?: string | undefined;
}

export interface IssuedToken {
  readonly tokens: TokenSet;
  readonly integration: Integration;
}

export interface TokenService {
  /**
   * The live integration a selector names (errors: not_found, failed_precondition, needs re-auth).
   * `authorize` runs on the integration found before anything about its state is checked, so a
   * caller it refuses learns nothing beyond what `authorize` throws.
   */
  resolve(selector: TokenSelector, authorize?: (integration: Integration) => void): Promise<Integration>;
  /** A token for `integration` valid at least `minValidForMs`, refreshing when needed. */
  tokenFor(
    ctx: RequestContext,
    integration: Integration,
    minValidForMs: number,
    requiredScopes: readonly string[],
    /**
     * `internal`: the broker itself uses the token (sync reads the account with it): nobody is
     * handed a token, so no `token.issued` event and no "last used" update.
     */
    options?: { readonly internal?: boolean },
  ): Promise<IssuedToken>;
  /** Forces a refresh now through the same single-flight path (RefreshIntegration, sync). */
  refreshNow(ctx: RequestContext, integrationId: string): Promise<{ integration: Integration; refreshed: boolean }>;
  /**
   * For the proactive refresher: refreshes when the token expires within `withinMs` (someone
   * else's fresher token counts). Returns whether this call refreshed at the provider.
   */
  refreshAhead(integrationId: string, withinMs: number): Promise<boolean>;
  /** Drops the cached copy (delete, re-authorization). */
  evict(integrationId: string): void;
  circuitStates(): ReadonlyMap<string, CircuitState>;
  /** Remaining pause (ms) of each provider that rate-limited the broker (provider-pause.ts). */
  providerPauses(): ReadonlyMap<string, number>;
  /** Stops background work; rotated refresh tokens still unstored get one last, bounded write attempt. */
  close(): Promise<void>;
}

const WRITE_ATTEMPTS = 5;
/** Provider failures after which nobody knows whether the provider processed the request. */
const UNKNOWN_OUTCOME_REASONS = new Set(["PROVIDER_TIMEOUT", "PROVIDER_UNREACHABLE", "CANCELLED"]);
/** Failures raised before a request was sent. */
const NOT_SENT_REASONS = new Set(["PROVIDER_CIRCUIT_OPEN"]);
const DATABASE_CALL_MS = 1_000;
const MAX_WAIT_MS = 30_000;
/**
 * How long a resolved integration (id or user + provider → integration) is reused without
 * asking PostgreSQL. Changes that matter to callers (refresh, re-authorization needed, delete,
 * reconnect) evict it at once through the change feed; this bound covers the rest.
 */
const RESOLVE_TTL_MS = 5_000;
/**
 * How long the token lifetime seen at a refresh is trusted to refuse a longer `min_valid_for`
 * without asking the provider; afterwards one refresh learns it again (the provider may change it).
 */
const LIFETIME_MEMORY_MS = 15 * 60_000;
/** Upper bound between background writes of an unstored rotated token (each also renews the lease). */
const BACKGROUND_WRITE_CAP_MS = 30_000;
/** How long shutdown waits for the last write of unstored rotated tokens. */
const CLOSE_FLUSH_MS = 2_000;

type TokenWrite = Parameters<TokenStore["tokenSets"]["writeIfVersion"]>[2];

/** Why a refresh ran; recorded in its audit event. */
type RefreshTrigger = "expiring" | "forced" | "proactive";

/** Who a refresh ran for: the caller its audit event names (the broker itself for the refresher). */
interface RefreshCaller {
  readonly caller: string;
  readonly callerKind: string;
  readonly requestId: string;
  readonly peer: string | undefined;
  readonly trigger: RefreshTrigger;
}

interface CurrentTokens {
  readonly tokens: TokenSet;
  readonly version: number;
  readonly refreshToken: string | undefined;
}

interface RefreshResult {
  readonly tokens: TokenSet;
  readonly version: number;
  readonly refreshed: boolean;
}

/**
 * A refresh the provider answered with a rotated refresh token that is not stored yet. The
 * provider has already invalidated the previous refresh token, so until the write lands this is
 * the only refresh token of the grant that still works.
 */
interface UnstoredRefresh {
  readonly integration: Integration;
  readonly expectedVersion: number;
  readonly tokens: TokenSet;
  /** Absent while the key service could not encrypt it either. */
  readonly write: TokenWrite | undefined;
  readonly by: RefreshCaller;
}

function refreshCallerOf(ctx: RequestContext | undefined, trigger: RefreshTrigger): RefreshCaller {
  if (ctx) return { ...auditCaller(ctx), trigger };
  // The refresher has no request: a fresh id still ties the event to this replica's log lines.
  return { caller: trigger === "proactive" ? "proactive-refresh" : "broker", callerKind: "system", requestId: randomUUID(), peer: undefined, trigger };
}

export function createTokenService(deps: TokenServiceDeps): TokenService {
  const { cipher, clock, logger } = deps;
  // No wait on the database outlasts its bound (issue 17: a cut wedged calls for good).
  const databaseMs = deps.settings.databaseCallTimeoutMs ?? DATABASE_CALL_MS;
  const maxWaitMs = deps.settings.maxWaitMs ?? MAX_WAIT_MS;
  const store: TokenStore = {
    integrations: boundDatabaseCalls(deps.store.integrations, "integrations", databaseMs, deps.database),
    tokenSets: boundDatabaseCalls(deps.store.tokenSets, "tokenSets", databaseMs, deps.database),
  };
  const audit = deps.audit && boundDatabaseCalls(deps.audit, "audit", databaseMs, deps.database);
  const changes = deps.changes && boundDatabaseCalls(deps.changes, "changes", databaseMs);
  const cache = createTokenCache(deps.settings.cacheMaxEntries);
  const pauses = createProviderPauses({
    clock,
    maxPauseMs: deps.settings.providerPause?.maxPauseMs ?? 300_000,
    backoffCapMs: deps.settings.providerPause?.backoffCapMs ?? 60_000,
    onPause: (notice, told) => {
      logger.warn(
        { provider: notice.provider, pauseMs: notice.remainingMs, retryAfterFromProvider: told },
        "the provider is rate limiting the broker: its token endpoint is paused on every replica",
      );
      deps.events?.providerPause?.(notice.provider, notice.remainingMs / 1000);
      void deps.pauseFeed?.publish(notice);
    },
  });
  const unsubscribePauses = deps.pauseFeed?.subscribe((notice) => pauses.adopt(notice));
  const leaseMs = deps.settings.leaseSeconds * 1000;
  const heartbeatMs = Math.max(10, deps.settings.leaseHeartbeatMs ?? leaseMs / 3);
  // A refresh runs on the broker's clock, not the first caller's. Its holder renews the lease
  // meanwhile (heartbeat), so the budget need not fit in one lease; a takeover while the
  // holder's renewals fail finds the lease's "sent" mark and does not blindly replay.
  const refreshBudgetMs = deps.settings.defaultDeadlineMs ?? 10_000;
  const abandoned = (what: string) => (key: string, afterMs: number) =>
    new BrokerError("deadline_exceeded", `${what} of integration ${key} did not finish within ${afterMs} ms and was abandoned; retry`, {
      reason: "OPERATION_ABANDONED",
      retryAfterMs: 1_000,
      metadata: { integration_id: key },
    });
  const onAbandon = (key: string) => logger.error({ integrationId: key }, "a shared token operation did not settle in time; its waiters are released");
  // A load has no side effects: abandoning it early is harmless.
  const loads = createSingleFlight<CurrentTokens | undefined>({ abandonAfterMs: maxWaitMs, abandoned: abandoned("reading the token set"), onAbandon });
  // A refresh is abandoned only well past the time its holder may keep the lease without
  // renewing it: a second refresh on this replica while the first may still be at the provider
  // would replay the refresh token.
  const refreshes = createSingleFlight<RefreshResult>({ abandonAfterMs: 2 * leaseMs + refreshBudgetMs, abandoned: abandoned("the refresh"), onAbandon });
  const breakers = new Map<string, CircuitBreaker>();
  const writeAttempts = Math.max(1, deps.settings.writeRetry?.attempts ?? WRITE_ATTEMPTS);
  const writeBaseMs = deps.settings.writeRetry?.baseMs ?? 200;
  const writeCapMs = deps.settings.writeRetry?.capMs ?? 2_000;
  // Each background write renews the kept lease: several chances per lease period.
  const backgroundCapMs = Math.max(10, Math.min(BACKGROUND_WRITE_CAP_MS, leaseMs / 3));
  const wakeups = createWakeups();
  const lastTouched = new Map<string, number>();
  const resolved = createResolvedIntegrations({ maxEntries: deps.settings.cacheMaxEntries, ttlMs: RESOLVE_TTL_MS, clock });
  const lifetimes = createTokenLifetimes({ maxEntries: deps.settings.cacheMaxEntries, trustMs: LIFETIME_MEMORY_MS, clock });
  const unstored = new Map<string, UnstoredRefresh>();
  const retrying = new Set<string>();
  const stopping = new AbortController();

  const unsubscribe = deps.changes?.subscribe((change) => {
    cache.evict(change.integrationId, change.version || Number.MAX_SAFE_INTEGER);
    resolved.forget(change.integrationId);
    wakeups.wake(change.integrationId);
  });

  function breakerFor(provider: string): CircuitBreaker {
    let breaker = breakers.get(provider);
    if (!breaker) {
      breaker = createCircuitBreaker({
        name: provider,
        clock,
        failureThreshold: deps.settings.breakerFailureThreshold,
        cooldownMs: deps.settings.breakerCooldownMs,
        onStateChange: (state) => {
          logger.warn({ provider, state }, "provider circuit breaker changed state");
          deps.events?.circuit?.(provider, state);
        },
      });
      breakers.set(provider, breaker);
    }
    return breaker;
  }

  async function decrypt(integrationId: string, stored: EncryptedTokenSet): Promise<CurrentTokens> {
    const inputs = [{ ciphertext: stored.accessTokenCiphertext, context: integrationId }];
    if (stored.refreshTokenCiphertext) inputs.push({ ciphertext: stored.refreshTokenCiphertext, context: integrationId });
    const [accessToken, refreshToken] = await cipher.decryptBatch(inputs);
    return {
      tokens: {
        accessToken: accessToken ?? "",
        tokenType: stored.tokenType,
        expiresAt: stored.expiresAt,
        scopes: stored.scopes,
      } satisfies TokenSet,
      version: stored.version,
      refreshToken,
    };
  }

  async function loadStored(integrationId: string): Promise<CurrentTokens | undefined> {
    const stored = await store.tokenSets.get(integrationId);
    if (!stored) return undefined;
    const loaded = await decrypt(integrationId, stored);
    cache.set(integrationId, { tokens: loaded.tokens, version: loaded.version });
    return loaded;
  }

  /**
   * Cached token sets never hold the refresh token, so the one handed out is the cached object
   * itself: callers (the GetAccessToken handler) can recognise a token set they answered with
   * before and reuse that answer.
   */
  const withoutRefreshToken = (tokens: TokenSet): TokenSet =>
    tokens.refreshToken === undefined ? tokens : { ...tokens, refreshToken: undefined };

  const validFor = (tokens: TokenSet) => tokens.expiresAt.getTime() - clock.now().getTime();

  /**
   * Calls the provider with retries (exponential backoff, full jitter) inside the deadline, at
   * most `maxAttempts` times; never while the provider has paused the broker (provider-pause.ts).
   */
  async function callProvider(integration: Integration, refreshToken: string, deadline: number, signal?: AbortSignal, maxAttempts = Number.POSITIVE_INFINITY) {
    const provider = deps.providers.get(integration.provider);
    if (!provider) {
      throw new BrokerError("failed_precondition", `provider ${integration.provider} is not configured on this broker`, {
        metadata: { provider: integration.provider },
      });
    }
    const breaker = breakerFor(integration.provider);
    for (let attempt = 0; ; attempt++) {
      pauses.check(integration.provider);
      breaker.acquire();
      const started = performance.now();
      try {
        const grant = await provider.refresh(refreshToken, { signal: AbortSignal.any([AbortSignal.timeout(Math.max(1, deadline - Date.now())), ...(signal ? [signal] : [])]) });
        breaker.success();
        pauses.succeeded(integration.provider);
        deps.events?.refresh?.(integration.provider, "success", (performance.now() - started) / 1000);
        return grant;
      } catch (error) {
        const code = isBrokerError(error) ? error.code : "provider_unavailable";
        deps.events?.refresh?.(integration.provider, code, (performance.now() - started) / 1000);
        // The provider answered (grant dead, misconfigured, rate limited): it is up.
        if (code === "integration_needs_reauth" || code === "provider_misconfigured" || code === "provider_rate_limited") {
          breaker.success();
          if (isBrokerError(error, "provider_rate_limited")) {
            const pausedMs = pauses.rateLimited(integration.provider, error);
            throw new BrokerError(error.code, error.message, { cause: error.cause, reason: error.reason, metadata: error.metadata, retryAfterMs: pausedMs });
          }
          throw error;
        }
        breaker.failure();
        const wait = fullJitterBackoff(attempt);
        if (code !== "provider_unavailable" || attempt + 1 >= maxAttempts || Date.now() + wait >= deadline || signal?.aborted) throw error;
        await sleep(wait, signal);
      }
    }
  }

  /** The one audit event of a refresh: `token.refreshed`, or `token.refresh_failed` with a failure reason. */
  function auditRefresh(integration: Integration, by: RefreshCaller, failure?: string, details: Record<string, string> = {}): Promise<void> {
    return (
      audit?.record({
        action: failure === undefined ? "token.refreshed" : "token.refresh_failed",
        outcome: failure === undefined ? "success" : "failure",
        reason: failure,
        ...auditSubject(integration),
        caller: by.caller,
        callerKind: by.callerKind,
        requestId: by.requestId,
        peer: by.peer,
        details: { trigger: by.trigger, ...details },
      }) ?? Promise.resolve()
    );
  }

  /** A failure's event must not replace the failure the caller is about to get. */
  async function auditRefreshFailure(integration: Integration, by: RefreshCaller, error: unknown, details?: Record<string, string>) {
    const reason = typeof error === "string" ? error : isBrokerError(error) ? error.reason : "INTERNAL";
    await auditRefresh(integration, by, reason, details).catch((e: unknown) =>
      logger.error({ err: e, integrationId: integration.id }, "the audit event of a failed refresh could not be written"),
    );
  }

  async function encryptForWrite(integrationId: string, tokens: TokenSet): Promise<TokenWrite> {
    const plaintexts = [{ plaintext: tokens.accessToken, context: integrationId }];
    if (tokens.refreshToken) plaintexts.push({ plaintext: tokens.refreshToken, context: integrationId });
    const [accessCiphertext, refreshCiphertext] = await cipher.encryptBatch(plaintexts);
    return {
      accessTokenCiphertext: accessCiphertext ?? "",
      refreshTokenCiphertext: refreshCiphertext ?? null,
      tokenType: tokens.tokenType,
      expiresAt: tokens.expiresAt,
      scopes: tokens.scopes,
    };
  }

  /**
   * After a failed write the commit may still have landed, with only its acknowledgement lost:
   * the stored set is ours when it holds our access token (a provider never issues one twice).
   */
  async function versionIfOurs(integrationId: string, tokens: TokenSet): Promise<number | undefined> {
    const latest = await store.tokenSets.get(integrationId);
    if (!latest) return undefined;
    const [accessToken] = await cipher.decryptBatch([{ ciphertext: latest.accessTokenCiphertext, context: integrationId }]);
    return accessToken === tokens.accessToken ? latest.version : undefined;
  }

  /**
   * Stores a refreshed set, retrying from memory while the caller waits. If that is not enough
   * and the provider rotated the refresh token, the set stays in memory with the lease and the
   * write continues in the background; the caller gets UNAVAILABLE with a retry delay.
   * Returns the new version, or undefined when a newer set was stored by someone else.
   */
  async function writeRefreshed(integration: Integration, expectedVersion: number, tokens: TokenSet, by: RefreshCaller) {
    const rotated = tokens.refreshToken !== undefined;
    let write: TokenWrite | undefined;
    let failure: unknown;
    for (let attempt = 1; attempt <= writeAttempts; attempt++) {
      try {
        write ??= await encryptForWrite(integration.id, tokens);
        const version = await store.tokenSets.writeIfVersion(integration.id, expectedVersion, write);
        return version ?? (attempt > 1 ? await versionIfOurs(integration.id, tokens) : undefined);
      } catch (error) {
        failure = error;
        logger.warn({ err: error, integrationId: integration.id, attempt, rotatedRefreshToken: rotated }, "storing the refreshed token set failed; retrying from memory");
      }
      if (attempt < writeAttempts) {
        await sleep(fullJitterBackoff(attempt, writeBaseMs, writeCapMs));
        // Keep the lease meanwhile: another replica refreshing with the stored, now invalidated,
        // refresh token would make a rotating provider revoke the whole grant.
        await store.tokenSets.acquireLease(integration.id, deps.replicaId, leaseMs).catch(() => undefined);
      }
    }
    const retryAfterMs = Math.max(1_000, writeCapMs);
    if (!rotated) {
      logger.error(
        { err: failure, integrationId: integration.id, provider: integration.provider, attempts: writeAttempts },
        "the refreshed token set could not be stored; the stored refresh token still works",
      );
      throw new BrokerError("database_unavailable", "the refreshed token could not be stored; retry", {
        cause: failure,
        retryAfterMs,
        metadata: { integration_id: integration.id },
      });
    }
    unstored.set(integration.id, { integration, expectedVersion, tokens, write, by });
    logger.error(
      { err: failure, integrationId: integration.id, provider: integration.provider, attempts: writeAttempts },
      "ALERT: a rotated refresh token could not be stored; it is kept in memory on this replica with the refresh lease, and the write is retried in the background",
    );
    retryInBackground(integration.id);
    throw new BrokerError("database_unavailable", "the refreshed token could not be stored yet; retry", {
      cause: failure,
      retryAfterMs,
      metadata: { integration_id: integration.id },
    });
  }

  /**
   * Writes a set kept in memory (this replica holds the lease). Returns it as now stored, or
   * undefined when a newer set was stored meanwhile (then the kept one is obsolete). Database
   * failures are thrown and the set stays kept.
   */
  async function storeUnstored(pending: UnstoredRefresh, stored: EncryptedTokenSet): Promise<CurrentTokens | undefined> {
    const { integration } = pending;
    let version: number | undefined;
    if (stored.version === pending.expectedVersion) {
      const write = pending.write ?? (await encryptForWrite(integration.id, pending.tokens));
      version = await store.tokenSets.writeIfVersion(integration.id, pending.expectedVersion, write);
    }
    version ??= await versionIfOurs(integration.id, pending.tokens);
    unstored.delete(integration.id);
    if (version === undefined) {
      logger.error(
        { integrationId: integration.id, provider: integration.provider },
        "ALERT: a newer token set was stored while a rotated refresh token waited in memory; the kept one is dropped and the grant may need re-authorization",
      );
      await auditRefreshFailure(integration, pending.by, "ROTATED_TOKEN_SUPERSEDED");
      return undefined;
    }
    logger.warn({ integrationId: integration.id, provider: integration.provider, version }, "the rotated refresh token kept in memory is stored now");
    const visible: TokenSet = { ...pending.tokens, refreshToken: undefined };
    cache.set(integration.id, { tokens: visible, version });
    await changes?.publish({ integrationId: integration.id, version }).catch((e: unknown) => logger.warn({ err: e }, "could not announce the stored token set"));
    // The refresh happened long before; its event waited for its outcome. Nobody waits on it now.
    await auditRefresh(integration, pending.by, undefined, { rotated: "true", stored_after_retry: "true" }).catch((e: unknown) =>
      logger.error({ err: e, integrationId: integration.id }, "the audit event of a refresh could not be written"),
    );
    return { tokens: visible, version, refreshToken: pending.tokens.refreshToken };
  }

  /** Retries the write of a kept rotated token until it lands or is superseded (or shutdown). */
  function retryInBackground(integrationId: string): void {
    if (retrying.has(integrationId)) return;
    retrying.add(integrationId);
    void (async () => {
      for (let attempt = 1; !stopping.signal.aborted && unstored.has(integrationId); attempt++) {
        await sleep(fullJitterBackoff(attempt, writeBaseMs, backgroundCapMs), stopping.signal);
        const pending = unstored.get(integrationId);
        if (!pending || stopping.signal.aborted) break;
        try {
          await flush(pending);
        } catch (error) {
          logger.warn({ err: error, integrationId, attempt }, "storing the kept rotated refresh token failed again; retrying in the background");
        }
      }
      retrying.delete(integrationId);
    })();
  }

  /** One write attempt of a kept set, through the same single flight and lease as refreshes. */
  function flush(pending: UnstoredRefresh): Promise<RefreshResult> {
    // Any stored token is good enough here: the point is the write, not a fresh token.
    return refreshes.run(pending.integration.id, () =>
      refreshCoordinated(undefined, pending.integration, Number.NEGATIVE_INFINITY, false, pending.by.trigger),
    );
  }

  async function failRefresh(integration: Integration, error: unknown): Promise<never> {
    const code = isBrokerError(error) ? error.code : "internal";
    if (code === "integration_needs_reauth") {
      const reason = isBrokerError(error) ? (error.metadata["error"] ?? error.reason).toLowerCase() : "invalid_grant";
      await store.integrations.markNeedsReauth(integration.id, reason);
      cache.evict(integration.id);
      resolved.forget(integration.id);
      await changes?.publish({ integrationId: integration.id, version: 0 }).catch((e: unknown) => logger.warn({ err: e }, "could not announce the refused grant"));
      logger.warn({ integrationId: integration.id, provider: integration.provider, reason }, "the provider refused the grant: integration needs re-authorization");
      checkStatus({ ...integration, status: "needs_reauth", statusReason: reason });
    }
    if (code === "provider_misconfigured") {
      logger.error({ integrationId: integration.id, provider: integration.provider }, "ALERT: configuration alarm: the provider rejected the broker's client credentials (invalid_client)");
    } else if (code === "provider_unavailable" || code === "provider_rate_limited" || code === "provider_error") {
      const retryAfter = isBrokerError(error) ? (error.retryAfterMs ?? 30_000) : 30_000;
      await store.integrations
        .recordRefreshFailure(integration.id, code, new Date(clock.now().getTime() + retryAfter))
        .catch((e: unknown) => logger.warn({ err: e }, "could not record the refresh failure"));
    }
    throw error;
  }

  function releaseLease(integrationId: string, options?: { keepSentMark?: boolean }): Promise<void> {
    return store.tokenSets.releaseLease(integrationId, deps.replicaId, options).catch((e: unknown) =>
      logger.warn({ err: e, integrationId }, "could not release the refresh lease; it expires by itself"),
    );
  }

  /**
   * Marks the lease as "request sent" and calls the provider. A refresh token `spent` may already
   * have been used by a holder that died (refresh-takeover.ts): it is tried once, and a refusal
   * is `ROTATED_TOKEN_LOST` with an ALERT naming that holder. `keepMark` learns whether the
   * lease's mark must outlive this holder: yes while nobody knows what the provider did with a
   * request sent with the stored refresh token.
   */
  async function sendRefresh(
    integration: Integration,
    current: CurrentTokens,
    deadline: number,
    spent: RefreshSentMark | undefined,
    keepMark: (keep: boolean) => void,
  ) {
    const refreshToken = current.refreshToken ?? "";
    if (!(await store.tokenSets.markRefreshSent(integration.id, deps.replicaId, current.version))) {
      throw new BrokerError("provider_unavailable", "the refresh lease passed to another replica; retry", {
        reason: "REFRESH_LEASE_LOST",
        retryAfterMs: 500,
        metadata: { integration_id: integration.id },
      });
    }
    if (spent) {
      logger.warn(
        { integrationId: integration.id, provider: integration.provider, sentBy: spent.by, sentAt: spent.at },
        "taking over a refresh whose request was sent by another lease holder without a recorded answer: the stored refresh token is tried once",
      );
    }
    try {
      const grant = await callProvider(integration, refreshToken, deadline, undefined, spent ? 1 : undefined);
      keepMark(false);
      return grant;
    } catch (error) {
      const reason = isBrokerError(error) ? error.reason : "";
      if (UNKNOWN_OUTCOME_REASONS.has(reason)) keepMark(true);
      // Refused before sending (paused, circuit open): what was known before still holds.
      else if (!NOT_SENT_REASONS.has(reason) && !(isBrokerError(error, "provider_rate_limited") && error.metadata["paused"] === "true")) keepMark(false);
      if (!spent || !isBrokerError(error, "integration_needs_reauth")) throw error;
      logger.error(
        { integrationId: integration.id, provider: integration.provider, lostWith: spent.by, sentAt: spent.at, providerError: error.metadata["error"] },
        `ALERT: the ${integration.provider} refresh token was lost with replica ${spent.by}: its refresh request reached the provider, which rotated the token, and the replica died (or lost the answer) before storing it; the provider refused the stored one, so the integration needs re-authorization`,
      );
      throw rotatedTokenLost(integration, error);
    }
  }

  /**
   * The part of a refresh that runs under this replica's lease: store a kept rotated token
   * first, use a token someone else stored meanwhile, or call the provider and store the result.
   */
  async function refreshUnderLease(
    ctx: RequestContext | undefined,
    integration: Integration,
    minValidForMs: number,
    force: boolean,
    trigger: RefreshTrigger,
    seenVersion: number | undefined,
    sentMark: RefreshSentMark | undefined,
  ): Promise<RefreshResult> {
    const deadline = Date.now() + refreshBudgetMs;
    const heartbeat = startLeaseHeartbeat({
      renew: () => store.tokenSets.renewLease(integration.id, deps.replicaId, leaseMs),
      everyMs: heartbeatMs,
      onLost: () => logger.warn({ integrationId: integration.id }, "the refresh lease passed to another replica while this one held it"),
      onError: (e) => logger.warn({ err: e, integrationId: integration.id }, "could not renew the refresh lease; it lapses unless a later renewal lands"),
    });
    // Whether the lease's "sent" mark outlives this holder (refresh-takeover.ts): an inherited
    // mark does until the provider answers; one of ours does when the answer never came.
    let keepSentMark = sentMark !== undefined;
    let by: RefreshCaller | undefined;
    let auditDeferred = false;
    let rotated = false;
    let usedVersion: number | undefined;
    let result: RefreshResult;
    try {
      let stored = await store.tokenSets.get(integration.id);
      if (!stored) {
        // Deleted meanwhile: a kept rotated token has nothing left to belong to.
        if (unstored.delete(integration.id)) logger.warn({ integrationId: integration.id }, "the integration is gone; its kept rotated refresh token is dropped");
        throw new BrokerError("not_found", `integration ${integration.id} has no tokens (deleted?)`);
      }
      const kept = unstored.get(integration.id);
      let current = kept ? await storeUnstored(kept, stored) : undefined;
      if (kept && !current) stored = (await store.tokenSets.get(integration.id)) ?? stored;
      current ??= await decrypt(integration.id, stored);
      // Someone else refreshed while we waited for the lease: use theirs.
      const refreshedMeanwhile = seenVersion !== undefined && current.version !== seenVersion;
      if ((!force || refreshedMeanwhile) && validFor(current.tokens) >= minValidForMs) {
        cache.set(integration.id, { tokens: current.tokens, version: current.version });
        return { tokens: current.tokens, version: current.version, refreshed: false };
      }
      by = refreshCallerOf(ctx, trigger);
      if (!current.refreshToken) throw noRefreshToken(integration, current.tokens.expiresAt);
      usedVersion = current.version;
      const spent = possiblySpent(sentMark, current.version);
      const grant = await sendRefresh(integration, current, deadline, spent, (keep) => (keepSentMark = keep));
      const tokens: TokenSet = {
        ...grant.tokens,
        // RFC 6749 §6: a refresh response without `scope` keeps the granted scopes.
        scopes: grant.tokens.scopes.length > 0 ? grant.tokens.scopes : current.tokens.scopes,
      };
      lifetimes.learn(integration.id, tokens.expiresAt);
      rotated = tokens.refreshToken !== undefined;
      auditDeferred = rotated;
      const version = await writeRefreshed(integration, current.version, tokens, by);
      auditDeferred = false;
      if (version === undefined) {
        // Only possible when our lease expired and another replica wrote: theirs is newer.
        logger.warn({ integrationId: integration.id }, "a newer token set was written while refreshing; discarding ours");
        await auditRefreshFailure(integration, by, "REFRESH_SUPERSEDED");
        const newer = await loadStored(integration.id);
        if (!newer) throw new BrokerError("not_found", `integration ${integration.id} has no tokens (deleted?)`);
        result = { tokens: newer.tokens, version: newer.version, refreshed: false };
      } else {
        const visible: TokenSet = { ...tokens, refreshToken: undefined };
        cache.set(integration.id, { tokens: visible, version });
        await changes?.publish({ integrationId: integration.id, version }).catch((e: unknown) => logger.warn({ err: e }, "could not announce the refreshed token set"));
        logger.info({ integrationId: integration.id, provider: integration.provider, rotated: grant.tokens.refreshToken !== undefined }, "token refreshed");
        result = { tokens: visible, version, refreshed: true };
      }
    } catch (error) {
      if (isBrokerError(error, "integration_needs_reauth") && usedVersion !== undefined) {
        // A replica whose lease had lapsed may have stored a rotated token meanwhile: then our
        // refresh token was simply stale, and the grant is alive.
        const latest = await store.tokenSets.get(integration.id);
        if (latest && latest.version !== usedVersion) {
          if (by) await auditRefreshFailure(integration, by, "REFRESH_SUPERSEDED", { cause: "stale_refresh_token" });
          const newer = await decrypt(integration.id, latest);
          cache.set(integration.id, { tokens: newer.tokens, version: newer.version });
          return { tokens: newer.tokens, version: newer.version, refreshed: false };
        }
      }
      // A kept rotated token records its event once its write lands or is given up.
      if (by && !auditDeferred) {
        // The reason the caller gets; for a refused grant, the provider's own error goes along.
        const refused = isBrokerError(error, "integration_needs_reauth");
        await auditRefreshFailure(
          integration,
          by,
          refused ? "INTEGRATION_NEEDS_REAUTH" : error,
          refused ? { cause: (error.metadata["error"] ?? error.reason).toLowerCase() } : undefined,
        );
      }
      return await failRefresh(integration, error);
    } finally {
      heartbeat.stop();
      // A kept rotated token keeps the lease too: the stored refresh token is invalidated.
      if (!unstored.has(integration.id)) await releaseLease(integration.id, { keepSentMark });
    }
    // Recorded before the token is handed out: a refresh that cannot be audited fails the call.
    if (by && result.refreshed) await auditRefresh(integration, by, undefined, { rotated: String(rotated) });
    return result;
  }

  /**
   * One refresh of `integration`, coordinated across replicas. Returns the token set that is
   * now current, whoever refreshed it.
   */
  async function refreshCoordinated(
    ctx: RequestContext | undefined,
    integration: Integration,
    minValidForMs: number,
    force: boolean,
    trigger: RefreshTrigger,
  ): Promise<RefreshResult> {
    // Waiting outlasts one lease: if its holder died, the lease lapses and this replica takes
    // over. A caller's own deadline still ends its wait sooner (awaitWithin).
    const waitUntil = Date.now() + leaseMs + refreshBudgetMs;
    let seenVersion: number | undefined;
    for (let attempt = 0; ; attempt++) {
      const lease = await store.tokenSets.acquireLease(integration.id, deps.replicaId, leaseMs);
      if (lease.acquired) return refreshUnderLease(ctx, integration, minValidForMs, force, trigger, seenVersion, lease.sent);
      // Another replica holds the lease: wait for its write (notification) or poll.
      deps.events?.leaseWait?.();
      if (seenVersion === undefined) seenVersion = (await store.tokenSets.get(integration.id))?.version;
      const remaining = waitUntil - Date.now();
      if (remaining <= 0) {
        throw new BrokerError("provider_unavailable", "the token is being refreshed by another replica and did not arrive in time; retry", {
          retryAfterMs: 500,
          metadata: { integration_id: integration.id },
        });
      }
      const leaseLeft = lease.expiresAt ? lease.expiresAt.getTime() - clock.now().getTime() : 0;
      await wakeups.wait(integration.id, Math.max(10, Math.min(remaining, leaseLeft > 0 ? leaseLeft : 50, 50 * 2 ** Math.min(attempt, 5))));
      const fresh = await loadStored(integration.id);
      if (fresh && fresh.version !== seenVersion && validFor(fresh.tokens) >= minValidForMs) {
        return { tokens: fresh.tokens, version: fresh.version, refreshed: false };
      }
      const latest = await store.integrations.get(integration.id);
      if (latest) checkStatus(latest);
    }
  }

  function touch(integration: Integration): void {
    const now = clock.now().getTime();
    if ((lastTouched.get(integration.id) ?? 0) > now - 60_000) return;
    lastTouched.set(integration.id, now);
    if (lastTouched.size > deps.settings.cacheMaxEntries) lastTouched.delete(lastTouched.keys().next().value ?? "");
    store.integrations.touchLastUsed(integration.id, new Date(now)).catch((error: unknown) => logger.warn({ err: error }, "could not record last use"));
  }

  return {
    async resolve(selector, authorize) {
      const key = selector.integrationId
        ? `id:${selector.integrationId}`
        : `user:${selector.userId ?? ""}\u0000${selector.provider ?? ""}\u0000${selector.externalAccountId ?? ""}`;
      const hit = resolved.get(key);
      if (hit) {
        try {
          authorize?.(hit);
        } catch (refusal) {
          // Refused no sooner than an unknown id, which costs a database read: the answer's timing
          // must not tell a caller that an integration it may not use exists and is in use here.
          // Nor may its outcome: while that read fails, both get the database's error.
          await store.integrations.get(hit.id);
          throw refusal;
        }
        checkStatus(hit);
        return hit;
      }
      let integration: Integration | undefined;
      if (selector.integrationId) {
        integration = await store.integrations.get(selector.integrationId);
        if (!integration) throw integrationNotFound(selector.integrationId);
      } else {
        const userId = selector.userId ?? "";
        const provider = selector.provider ?? "";
        const found = await store.integrations.findForUser(userId, provider, selector.externalAccountId || undefined);
        if (found.length === 0) {
          throw new BrokerError("not_found", `user ${userId} has no ${provider} integration; connect one with StartAuthorization`, {
            reason: "INTEGRATION_NOT_FOUND",
            metadata: { user_id: userId, provider },
          });
        }
        if (found.length > 1) {
          throw new BrokerError(
            "failed_precondition",
            `user ${userId} has ${found.length} ${provider} accounts connected; set external_account_id to choose one`,
            { reason: "AMBIGUOUS_INTEGRATION", fieldViolations: [{ field: "external_account_id", description: "required when several accounts are connected" }] },
          );
        }
        integration = found[0];
      }
      if (!integration) throw new BrokerError("internal", "integration lookup returned nothing");
      authorize?.(integration);
      checkStatus(integration);
      resolved.remember(key, integration);
      return integration;
    },

    async tokenFor(ctx, integration, minValidForMs, requiredScopes, options) {
      checkScopes(integration, requiredScopes);
      const now = clock.now().getTime();
      let tokens = cache.get(integration.id, now)?.tokens;
      deps.events?.cache?.(tokens !== undefined && tokens.expiresAt.getTime() - now >= minValidForMs);
      if (!tokens || tokens.expiresAt.getTime() - now < minValidForMs) {
        const loaded = await awaitWithin(loads.run(integration.id, () => loadStored(integration.id)), ctx, maxWaitMs);
        if (!loaded) throw new BrokerError("not_found", `integration ${integration.id} has no tokens (deleted?)`);
        tokens = loaded.tokens;
        // A refresh this caller joins may have been started for a shorter min_valid_for: check
        // the result against this caller's own need and refresh again once if it falls short.
        for (let round = 0; round < 2 && validFor(tokens) < minValidForMs; round++) {
          // No refresh can help when the provider's tokens live shorter than asked for.
          const lifetime = lifetimes.known(integration.id);
          if (lifetime !== undefined && lifetime < minValidForMs) throw lifetimeTooShort(integration, lifetime, minValidForMs);
          tokens = (await awaitWithin(refreshes.run(integration.id, () => refreshCoordinated(ctx, integration, minValidForMs, false, "expiring")), ctx, maxWaitMs)).tokens;
        }
      }
      if (validFor(tokens) < minValidForMs) {
        const lifetime = lifetimes.known(integration.id);
        throw lifetimeTooShort(integration, lifetime !== undefined && lifetime < minValidForMs ? lifetime : validFor(tokens), minValidForMs);
      }
      const handedOut = withoutRefreshToken(tokens);
      if (options?.internal) return { tokens: handedOut, integration };
      await audit?.record({
        action: "token.issued",
        outcome: "success",
        ...auditCaller(ctx),
        ...auditSubject(integration),
        scopes: requiredScopes,
      });
      touch(integration);
      return { tokens: handedOut, integration };
    },

    async refreshNow(ctx, integrationId) {
      const integration = await this.resolve({ integrationId });
      const result = await awaitWithin(refreshes.run(integration.id, () => refreshCoordinated(ctx, integration, 0, true, "forced")), ctx, maxWaitMs);
      const latest = (await store.integrations.get(integration.id)) ?? integration;
      return { integration: latest, refreshed: result.refreshed };
    },

    async refreshAhead(integrationId, withinMs) {
      // A failed read leaves the claim's lease to lapse by itself: a refresh of this integration
      // on this replica may be running under it (the owner is the replica).
      const integration = await store.integrations.get(integrationId);
      if (integration?.status !== "active") {
        // Gone, or no longer active since the claim: nothing will refresh it, so the claim's lease
        // goes back now. Inside the single flight, so no refresh of it here runs under the lease
        // meanwhile; never while a rotated refresh token kept here waits for its write.
        await refreshes
          .run(integrationId, async () => {
            if (!unstored.has(integrationId)) await releaseLease(integrationId);
            if (integration) checkStatus(integration);
            throw integrationNotFound(integrationId);
          })
          .catch(() => undefined);
        return false;
      }
      // Same rule as the claim: a token living shorter than the window is refreshed at half-life.
      const lifetime =
        integration.accessTokenExpiresAt && integration.lastRefreshedAt
          ? integration.accessTokenExpiresAt.getTime() - integration.lastRefreshedAt.getTime()
          : withinMs * 2;
      const threshold = Math.min(withinMs, lifetime / 2);
      const result = await refreshes.run(integration.id, () => refreshCoordinated(undefined, integration, threshold, false, "proactive"));
      return result.refreshed;
    },

    evict(integrationId) {
      cache.evict(integrationId);
      resolved.forget(integrationId);
      lifetimes.forget(integrationId);
    },

    circuitStates() {
      return new Map([...breakers].map(([provider, breaker]) => [provider, breaker.state()]));
    },

    providerPauses() {
      return pauses.paused();
    },

    async close() {
      unsubscribe?.();
      unsubscribePauses?.();
      stopping.abort();
      const kept = [...unstored.values()];
      if (kept.length === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(kept.map((pending) => flush(pending))),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_FLUSH_MS))),
      ]);
      clearTimeout(timer);
      for (const pending of unstored.values()) {
        logger.error(
          { integrationId: pending.integration.id, provider: pending.integration.provider },
          "ALERT: shutting down with a rotated refresh token that could not be stored; the grant will need re-authorization",
        );
      }
    },
  };
}
