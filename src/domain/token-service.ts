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
 * access token; a failed write is retried from memory and logged loudly, never dropped
 * (oauth-client-security.md §7). `invalid_grant` marks the integration NEEDS_REAUTH (§8).
 */
import { BrokerError, isBrokerError } from "./errors.js";
import { integrationNotFound } from "./policy.js";
import { createCircuitBreaker, type CircuitBreaker, type CircuitState } from "./circuit-breaker.js";
import type { AuditLog, Cipher, Clock, ProviderClient } from "./ports.js";
import { createSingleFlight } from "./single-flight.js";
import { createTokenCache } from "./token-cache.js";
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
    ): Promise<{ acquired: true; version: number } | { acquired: false; expiresAt: Date | undefined }>;
    releaseLease(integrationId: string, owner: string): Promise<void>;
  };
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
  readonly audit?: AuditLog | undefined;
  readonly settings: {
    readonly cacheMaxEntries: number;
    readonly leaseSeconds: number;
    /** When a caller sets no deadline, a refresh may take this long. */
    readonly defaultDeadlineMs?: number;
    readonly breakerFailureThreshold?: number;
    readonly breakerCooldownMs?: number;
  };
  /** Observability hooks (metrics). */
  readonly events?: {
    cache?(hit: boolean): void;
    refresh?(provider: string, result: string, seconds: number): void;
    leaseWait?(): void;
    circuit?(provider: string, state: CircuitState): void;
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
  /** The live integration a selector names (errors: not_found, failed_precondition, needs re-auth). */
  resolve(selector: TokenSelector): Promise<Integration>;
  /** A token for `integration` valid at least `minValidForMs`, refreshing when needed. */
  tokenFor(ctx: RequestContext, integration: Integration, minValidForMs: number, requiredScopes: readonly string[]): Promise<IssuedToken>;
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
  close(): void;
}

const WRITE_ATTEMPTS = 5;
/**
 * How long a resolved integration (id or user + provider → integration) is reused without
 * asking PostgreSQL. Changes that matter to callers (refresh, re-authorization needed, delete,
 * reconnect) evict it at once through the change feed; this bound covers the rest.
 */
const RESOLVE_TTL_MS = 5_000;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Waits for `work` on behalf of one caller: the caller's deadline or cancellation ends its own
 * wait, never the shared work (other callers, and a rotated refresh token, depend on it).
 */
function awaitWithin<T>(work: Promise<T>, ctx: RequestContext | undefined): Promise<T> {
  if (!ctx?.deadline && !ctx?.signal) return work;
  return new Promise<T>((resolve, reject) => {
    const fail = () => {
      cleanup();
      reject(new BrokerError("deadline_exceeded", "the deadline passed while the token was being refreshed; retry", { retryAfterMs: 200 }));
    };
    const timer = ctx.deadline ? setTimeout(fail, Math.max(0, ctx.deadline - Date.now())) : undefined;
    const cleanup = () => {
      clearTimeout(timer);
      ctx.signal?.removeEventListener("abort", fail);
    };
    ctx.signal?.addEventListener("abort", fail, { once: true });
    work.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (error: unknown) => {
        cleanup();
        reject(error);
      },
    );
  });
}

/** Full jitter (AWS architecture blog): a random wait up to the exponential bound. */
function backoff(attempt: number, baseMs = 100, capMs = 5_000): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
}

export function checkStatus(integration: Integration): void {
  if (integration.status === "deleted") {
    throw new BrokerError("not_found", `integration ${integration.id} was deleted`, { metadata: { integration_id: integration.id } });
  }
  if (integration.status === "needs_reauth") {
    throw new BrokerError(
      "integration_needs_reauth",
      `the user must connect their ${integration.provider} account again (the provider refused the stored grant)`,
      {
        reason: "INTEGRATION_NEEDS_REAUTH",
        metadata: { integration_id: integration.id, provider: integration.provider, cause: integration.statusReason },
      },
    );
  }
}

export function checkScopes(integration: Integration, required: readonly string[]): void {
  const granted = new Set(integration.grantedScopes);
  const missing = required.filter((scope) => !granted.has(scope));
  if (missing.length > 0) {
    throw new BrokerError(
      "scope_not_granted",
      `the integration lacks the scopes ${missing.join(", ")}; send the user through StartAuthorization with them (incremental consent)`,
      {
        reason: "SCOPE_NOT_GRANTED",
        metadata: { integration_id: integration.id, provider: integration.provider, missing_scopes: missing.join(" ") },
      },
    );
  }
}

export function createTokenService(deps: TokenServiceDeps): TokenService {
  const { store, cipher, clock, logger } = deps;
  const cache = createTokenCache(deps.settings.cacheMaxEntries);
  const loads = createSingleFlight<{ tokens: TokenSet; version: number; refreshToken: string | undefined } | undefined>();
  const refreshes = createSingleFlight<{ tokens: TokenSet; version: number; refreshed: boolean }>();
  const breakers = new Map<string, CircuitBreaker>();
  const leaseMs = deps.settings.leaseSeconds * 1000;
  const waiters = new Map<string, Set<() => void>>();
  const lastTouched = new Map<string, number>();
  const resolved = new Map<string, { integration: Integration; until: number }>();
  const resolvedKeys = new Map<string, Set<string>>();

  function forgetResolved(integrationId: string): void {
    for (const key of resolvedKeys.get(integrationId) ?? []) resolved.delete(key);
    resolvedKeys.delete(integrationId);
  }

  function remember(key: string, integration: Integration): void {
    if (resolved.size >= deps.settings.cacheMaxEntries) {
      const oldest = resolved.keys().next().value;
      if (oldest !== undefined) resolved.delete(oldest);
    }
    resolved.set(key, { integration, until: clock.now().getTime() + RESOLVE_TTL_MS });
    let keys = resolvedKeys.get(integration.id);
    if (!keys) resolvedKeys.set(integration.id, (keys = new Set()));
    keys.add(key);
  }

  const unsubscribe = deps.changes?.subscribe((change) => {
    cache.evict(change.integrationId, change.version || Number.MAX_SAFE_INTEGER);
    forgetResolved(change.integrationId);
    for (const wake of waiters.get(change.integrationId) ?? []) wake();
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

  /** Waits for a change notification on `integrationId`, at most `ms`. */
  function waitForChange(integrationId: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = waiters.get(integrationId);
      if (!set) waiters.set(integrationId, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        set?.delete(done);
        if (set?.size === 0) waiters.delete(integrationId);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
      set.add(done);
    });
  }

  async function decrypt(integrationId: string, stored: EncryptedTokenSet) {
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

  async function loadStored(integrationId: string) {
    const stored = await store.tokenSets.get(integrationId);
    if (!stored) return undefined;
    const loaded = await decrypt(integrationId, stored);
    cache.set(integrationId, { tokens: loaded.tokens, version: loaded.version });
    return loaded;
  }

  const validFor = (tokens: TokenSet) => tokens.expiresAt.getTime() - clock.now().getTime();

  /** Calls the provider with retries (exponential backoff, full jitter) inside the deadline. */
  async function callProvider(integration: Integration, refreshToken: string, deadline: number, signal?: AbortSignal) {
    const provider = deps.providers.get(integration.provider);
    if (!provider) {
      throw new BrokerError("failed_precondition", `provider ${integration.provider} is not configured on this broker`, {
        metadata: { provider: integration.provider },
      });
    }
    const breaker = breakerFor(integration.provider);
    for (let attempt = 0; ; attempt++) {
      breaker.acquire();
      const started = performance.now();
      try {
        const grant = await provider.refresh(refreshToken, { signal: AbortSignal.any([AbortSignal.timeout(Math.max(1, deadline - Date.now())), ...(signal ? [signal] : [])]) });
        breaker.success();
        deps.events?.refresh?.(integration.provider, "success", (performance.now() - started) / 1000);
        return grant;
      } catch (error) {
        const code = isBrokerError(error) ? error.code : "provider_unavailable";
        deps.events?.refresh?.(integration.provider, code, (performance.now() - started) / 1000);
        // The provider answered (grant dead, misconfigured, rate limited): it is up.
        if (code === "integration_needs_reauth" || code === "provider_misconfigured" || code === "provider_rate_limited") {
          breaker.success();
          throw error;
        }
        breaker.failure();
        const wait = backoff(attempt);
        if (code !== "provider_unavailable" || Date.now() + wait >= deadline || signal?.aborted) throw error;
        await sleep(wait, signal);
      }
    }
  }

  /** Writes the refreshed set, retrying from memory: a rotated refresh token must not be lost. */
  async function writeRefreshed(integration: Integration, expectedVersion: number, tokens: TokenSet) {
    const plaintexts = [{ plaintext: tokens.accessToken, context: integration.id }];
    if (tokens.refreshToken) plaintexts.push({ plaintext: tokens.refreshToken, context: integration.id });
    const [accessCiphertext, refreshCiphertext] = await cipher.encryptBatch(plaintexts);
    const write = {
      accessTokenCiphertext: accessCiphertext ?? "",
      refreshTokenCiphertext: refreshCiphertext ?? null,
      tokenType: tokens.tokenType,
      expiresAt: tokens.expiresAt,
      scopes: tokens.scopes,
    };
    for (let attempt = 1; ; attempt++) {
      try {
        return await store.tokenSets.writeIfVersion(integration.id, expectedVersion, write);
      } catch (error) {
        const rotated = tokens.refreshToken !== undefined;
        if (attempt >= WRITE_ATTEMPTS) {
          logger.error(
            { err: error, integrationId: integration.id, provider: integration.provider, rotatedRefreshToken: rotated, attempts: attempt },
            rotated
              ? "ALERT: a rotated refresh token could not be stored; the grant may need re-authorization"
              : "the refreshed token set could not be stored",
          );
          throw error;
        }
        logger.warn({ err: error, integrationId: integration.id, attempt, rotatedRefreshToken: rotated }, "storing the refreshed token set failed; retrying from memory");
        await sleep(backoff(attempt, 200, 2_000));
      }
    }
  }

  async function failRefresh(integration: Integration, error: unknown, ctx: RequestContext | undefined): Promise<never> {
    const code = isBrokerError(error) ? error.code : "internal";
    if (code === "integration_needs_reauth") {
      const reason = isBrokerError(error) ? (error.metadata["error"] ?? error.reason).toLowerCase() : "invalid_grant";
      await store.integrations.markNeedsReauth(integration.id, reason);
      cache.evict(integration.id);
      forgetResolved(integration.id);
      await deps.changes?.publish({ integrationId: integration.id, version: 0 });
      logger.warn({ integrationId: integration.id, provider: integration.provider, reason }, "the provider refused the grant: integration needs re-authorization");
      await deps.audit?.record({
        action: "token.refresh_failed",
        outcome: "failure",
        reason: "INTEGRATION_NEEDS_REAUTH",
        integrationId: integration.id,
        userId: integration.userId,
        provider: integration.provider,
        caller: ctx?.principal.subject,
        callerKind: ctx?.principal.kind ?? "system",
        requestId: ctx?.requestId,
        peer: ctx?.peer,
      });
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

  /**
   * One refresh of `integration`, coordinated across replicas. Returns the token set that is
   * now current, whoever refreshed it.
   */
  async function refreshCoordinated(
    ctx: RequestContext | undefined,
    integration: Integration,
    minValidForMs: number,
    force: boolean,
  ): Promise<{ tokens: TokenSet; version: number; refreshed: boolean }> {
    // The refresh is shared: it runs on the broker's clock, not the first caller's, and ends
    // well inside the lease so no other replica can take over while the provider is called.
    const deadline = Date.now() + Math.min(deps.settings.defaultDeadlineMs ?? 10_000, leaseMs * 0.8);
    let seenVersion: number | undefined;
    let usedVersion: number | undefined;
    for (let attempt = 0; ; attempt++) {
      const lease = await store.tokenSets.acquireLease(integration.id, deps.replicaId, leaseMs);
      if (lease.acquired) {
        try {
          const stored = await store.tokenSets.get(integration.id);
          if (!stored) throw new BrokerError("not_found", `integration ${integration.id} has no tokens (deleted?)`);
          const current = await decrypt(integration.id, stored);
          // Someone else refreshed while we waited for the lease: use theirs.
          const refreshedMeanwhile = seenVersion !== undefined && stored.version !== seenVersion;
          if ((!force || refreshedMeanwhile) && validFor(current.tokens) >= minValidForMs) {
            cache.set(integration.id, { tokens: current.tokens, version: current.version });
            return { tokens: current.tokens, version: current.version, refreshed: false };
          }
          if (!current.refreshToken) {
            throw new BrokerError("integration_needs_reauth", `the ${integration.provider} grant has no refresh token; the user must connect again`, {
              reason: "INTEGRATION_NEEDS_REAUTH",
              metadata: { integration_id: integration.id, provider: integration.provider, error: "no_refresh_token" },
            });
          }
          usedVersion = stored.version;
          const grant = await callProvider(integration, current.refreshToken, deadline);
          const tokens: TokenSet = {
            ...grant.tokens,
            // RFC 6749 §6: a refresh response without `scope` keeps the granted scopes.
            scopes: grant.tokens.scopes.length > 0 ? grant.tokens.scopes : stored.scopes,
          };
          const version = await writeRefreshed(integration, stored.version, tokens);
          if (version === undefined) {
            // Only possible when our lease expired and another replica wrote: theirs is newer.
            logger.warn({ integrationId: integration.id }, "a newer token set was written while refreshing; discarding ours");
            const newer = await loadStored(integration.id);
            if (newer) return { tokens: newer.tokens, version: newer.version, refreshed: false };
            throw new BrokerError("not_found", `integration ${integration.id} has no tokens (deleted?)`);
          }
          const visible: TokenSet = { ...tokens, refreshToken: undefined };
          cache.set(integration.id, { tokens: visible, version });
          await deps.changes?.publish({ integrationId: integration.id, version });
          logger.info({ integrationId: integration.id, provider: integration.provider, rotated: grant.tokens.refreshToken !== undefined }, "token refreshed");
          return { tokens: visible, version, refreshed: true };
        } catch (error) {
          if (isBrokerError(error, "integration_needs_reauth") && usedVersion !== undefined) {
            // A replica whose lease had lapsed may have stored a rotated token meanwhile: then our
            // refresh token was simply stale, and the grant is alive.
            const latest = await store.tokenSets.get(integration.id);
            if (latest && latest.version !== usedVersion) {
              const newer = await decrypt(integration.id, latest);
              cache.set(integration.id, { tokens: newer.tokens, version: newer.version });
              return { tokens: newer.tokens, version: newer.version, refreshed: false };
            }
          }
          return await failRefresh(integration, error, ctx);
        } finally {
          await store.tokenSets.releaseLease(integration.id, deps.replicaId).catch((e: unknown) =>
            logger.warn({ err: e, integrationId: integration.id }, "could not release the refresh lease; it expires by itself"),
          );
        }
      }
      // Another replica holds the lease: wait for its write (notification) or poll.
      deps.events?.leaseWait?.();
      if (seenVersion === undefined) seenVersion = (await store.tokenSets.get(integration.id))?.version;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new BrokerError("provider_unavailable", "the token is being refreshed by another replica and did not arrive in time; retry", {
          retryAfterMs: 500,
          metadata: { integration_id: integration.id },
        });
      }
      const leaseLeft = lease.expiresAt ? lease.expiresAt.getTime() - clock.now().getTime() : 0;
      await waitForChange(integration.id, Math.max(10, Math.min(remaining, leaseLeft > 0 ? leaseLeft : 50, 50 * 2 ** Math.min(attempt, 5))));
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
    async resolve(selector) {
      const key = selector.integrationId
        ? `id:${selector.integrationId}`
        : `user:${selector.userId ?? ""}\u0000${selector.provider ?? ""}\u0000${selector.externalAccountId ?? ""}`;
      const hit = resolved.get(key);
      if (hit && hit.until > clock.now().getTime()) {
        checkStatus(hit.integration);
        return hit.integration;
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
      checkStatus(integration);
      remember(key, integration);
      return integration;
    },

    async tokenFor(ctx, integration, minValidForMs, requiredScopes) {
      checkScopes(integration, requiredScopes);
      const now = clock.now().getTime();
      let tokens = cache.get(integration.id, now)?.tokens;
      deps.events?.cache?.(tokens !== undefined && tokens.expiresAt.getTime() - now >= minValidForMs);
      if (!tokens || tokens.expiresAt.getTime() - now < minValidForMs) {
        const loaded = await loads.run(integration.id, () => loadStored(integration.id));
        if (!loaded) throw new BrokerError("not_found", `integration ${integration.id} has no tokens (deleted?)`);
        tokens = loaded.tokens;
        // A refresh this caller joins may have been started for a shorter min_valid_for: check
        // the result against this caller's own need and refresh again once if it falls short.
        for (let round = 0; round < 2 && validFor(tokens) < minValidForMs; round++) {
          tokens = (await awaitWithin(refreshes.run(integration.id, () => refreshCoordinated(ctx, integration, minValidForMs, false)), ctx)).tokens;
        }
      }
      if (validFor(tokens) < minValidForMs) {
        throw new BrokerError(
          "failed_precondition",
          `the provider issued a token valid for ${Math.floor(validFor(tokens) / 1000)} s, less than the ${Math.ceil(minValidForMs / 1000)} s asked for; ask for less`,
          { reason: "TOKEN_LIFETIME_TOO_SHORT", fieldViolations: [{ field: "min_valid_for", description: "longer than the provider's token lifetime" }] },
        );
      }
      await deps.audit?.record({
        action: "token.issued",
        outcome: "success",
        caller: ctx.principal.subject,
        callerKind: ctx.principal.kind,
        userId: integration.userId,
        integrationId: integration.id,
        provider: integration.provider,
        requestId: ctx.requestId,
        peer: ctx.peer,
        scopes: requiredScopes,
      });
      touch(integration);
      return { tokens: { ...tokens, refreshToken: undefined }, integration };
    },

    async refreshNow(ctx, integrationId) {
      const integration = await this.resolve({ integrationId });
      const result = await awaitWithin(refreshes.run(integration.id, () => refreshCoordinated(ctx, integration, 0, true)), ctx);
      const latest = (await store.integrations.get(integration.id)) ?? integration;
      return { integration: latest, refreshed: result.refreshed };
    },

    async refreshAhead(integrationId, withinMs) {
      const integration = await store.integrations.get(integrationId);
      if (!integration || integration.status !== "active") return false;
      // Same rule as the claim: a token living shorter than the window is refreshed at half-life.
      const lifetime =
        integration.accessTokenExpiresAt && integration.lastRefreshedAt
          ? integration.accessTokenExpiresAt.getTime() - integration.lastRefreshedAt.getTime()
          : withinMs * 2;
      const threshold = Math.min(withinMs, lifetime / 2);
      const result = await refreshes.run(integration.id, () => refreshCoordinated(undefined, integration, threshold, false));
      return result.refreshed;
    },

    evict(integrationId) {
      cache.evict(integrationId);
      forgetResolved(integrationId);
    },

    circuitStates() {
      return new Map([...breakers].map(([provider, breaker]) => [provider, breaker.state()]));
    },

    close() {
      unsubscribe?.();
    },
  };
}

