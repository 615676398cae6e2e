/**
 * The lease-coordinated refresh with in-memory fakes of its ports (test/support/token-fakes.ts):
 * waiting for another replica, taking over once that replica's lease lapses, the "sent" mark a
 * holder leaves when the provider's answer never came, and the one try of a possibly spent
 * refresh token. No PostgreSQL, no sockets.
 */
import { afterEach, describe, expect, it } from "vitest";
import { BrokerError } from "../../src/domain/errors.js";
import type { ProviderGrant } from "../../src/domain/ports.js";
import { createTokenLifetimes } from "../../src/domain/tokens/integration-memory.js";
import { createProviderCalls } from "../../src/domain/tokens/provider-calls.js";
import { createRefreshAudit } from "../../src/domain/tokens/refresh-audit.js";
import { createRefreshCoordinator, type RefreshNeed } from "../../src/domain/tokens/refresh-coordinator.js";
import { refreshBudget } from "../../src/domain/tokens/lease-heartbeat.js";
import { createRefreshLeases } from "../../src/domain/tokens/refresh-lease.js";
import { createRotatedTokenCustody, type RotatedTokenCustody } from "../../src/domain/tokens/rotated-token-custody.js";
import { createStoredTokens } from "../../src/domain/tokens/stored-tokens.js";
import { createTokenCache } from "../../src/domain/tokens/token-cache.js";
import type { TokenSet } from "../../src/domain/types.js";
import { createWakeups } from "../../src/domain/tokens/token-waits.js";
import { callerContext, fakeCipher, fakeProvider, fakeTokenStore, integrationFixture, NOW, recordingAudit, silentLogger } from "../support/token-fakes.js";
import { manualClock } from "../support/manual-clock.js";
import { awaitedLater } from "../support/wait-until.js";

const HOUR = 3_600_000;
const LEASE_MS = 30_000;
const BUDGET_MS = 10_000;
const expiring: RefreshNeed = { minValidForMs: 60_000, force: false, trigger: "expiring" };
const integration = integrationFixture();
const custodies: RotatedTokenCustody[] = [];
/** Each test's clock (set up afresh by `setUp`). */
let clock = manualClock(NOW.getTime());

afterEach(async () => {
  await Promise.all(custodies.splice(0).map((c) => c.close()));
});

function setUp(answer: (refreshToken: string, call: number) => Promise<ProviderGrant>) {
  clock = manualClock(NOW.getTime());
  const tokens = (ms: number, accessToken: string, refreshToken?: string): TokenSet => ({
    accessToken,
    tokenType: "Bearer",
    expiresAt: new Date(clock.now().getTime() + ms),
    scopes: ["read"],
    refreshToken,
  });
  const store = fakeTokenStore(clock);
  const cache = createTokenCache(100);
  const stored = createStoredTokens({ store, cipher: fakeCipher(), cache });
  const leases = createRefreshLeases({ store, replicaId: "replica-a", leaseMs: LEASE_MS, heartbeatMs: 10_000, holdLimitMs: refreshBudget({}).holdLimitMs, logger: silentLogger });
  const auditLog = recordingAudit();
  const audit = createRefreshAudit({ audit: auditLog, logger: silentLogger });
  const provider = fakeProvider(answer);
  const wakeups = createWakeups();
  const custody = createRotatedTokenCustody({
    store,
    stored,
    leases,
    cache,
    audit,
    logger: silentLogger,
    budget: refreshBudget({}),
    flush: (pending) => coordinator.refresh(undefined, pending.integration, { minValidForMs: Number.NEGATIVE_INFINITY, force: false, trigger: pending.by.trigger }),
  });
  custodies.push(custody);
  const coordinator = createRefreshCoordinator({
    store,
    stored,
    cache,
    leases,
    custody,
    provider: createProviderCalls({ providers: { get: () => provider }, clock, logger: silentLogger, settings: {} }),
    audit,
    lifetimes: createTokenLifetimes({ maxEntries: 100, trustMs: HOUR, clock }),
    wakeups,
    changes: undefined,
    clock,
    logger: silentLogger,
    refreshBudgetMs: BUDGET_MS,
    forget: () => undefined,
  });
  store.put(integration, tokens(10_000, "at-1", "rt-1"));
  return { tokens, store, provider, wakeups, auditLog, coordinator };
}

const providerTimeout = () => new BrokerError("provider_unavailable", "no answer", { reason: "PROVIDER_TIMEOUT" });

describe("refresh coordinator", () => {
  it("refreshes under the lease, stores the new set and gives the lease back", async () => {
    const { tokens, store, provider, coordinator } = setUp(async () => ({ tokens: tokens(HOUR, "at-2", "rt-2") }));
    const result = await coordinator.refresh(callerContext(), integration, expiring);
    expect(result).toMatchObject({ refreshed: true, version: 2, tokens: { accessToken: "at-2", refreshToken: undefined } });
    expect(provider.sent).toEqual(["rt-1"]);
    expect(store.plaintext(integration.id)).toEqual({ accessToken: "at-2", refreshToken: "rt-2", version: 2 });
    expect(store.leases.has(integration.id)).toBe(false);
  });

  it("refreshes under a lease the claim already took: no second take, and the write gives it back", async () => {
    const { tokens, store, provider, coordinator } = setUp(async () => ({ tokens: tokens(HOUR, "at-2", "rt-2") }));
    const claimed = await store.tokenSets.acquireLease(integration.id, "replica-a", LEASE_MS);
    if (!claimed.acquired) throw new Error("the lease of a fresh integration is free");
    let takes = 0;
    const acquireLease = store.tokenSets.acquireLease.bind(store.tokenSets);
    store.tokenSets.acquireLease = (...args) => {
      takes += 1;
      return acquireLease(...args);
    };
    let releases = 0;
    const releaseLease = store.tokenSets.releaseLease.bind(store.tokenSets);
    store.tokenSets.releaseLease = (...args) => {
      releases += 1;
      return releaseLease(...args);
    };
    expect(await coordinator.refresh(undefined, integration, { ...expiring, trigger: "proactive" }, claimed)).toMatchObject({ refreshed: true, version: 2 });
    expect(provider.sent).toEqual(["rt-1"]);
    expect([takes, releases, store.leases.has(integration.id)]).toEqual([0, 0, false]);
  });

  it("waits for the replica holding the lease and answers with the set it stored, without calling the provider", async () => {
    const { tokens, store, provider, wakeups, coordinator } = setUp(async () => ({ tokens: tokens(HOUR, "never") }));
    store.leases.set(integration.id, { owner: "replica-b", expiresAt: clock.now().getTime() + LEASE_MS });
    const waiting = awaitedLater(coordinator.refresh(callerContext(), integration, expiring));
    await expect.poll(() => store.reads.tokenSets).toBeGreaterThanOrEqual(1);
    store.put(integration, tokens(HOUR, "at-from-b", "rt-from-b"));
    wakeups.wake(integration.id);
    expect(await waiting).toMatchObject({ refreshed: false, version: 2, tokens: { accessToken: "at-from-b" } });
    expect(provider.sent).toEqual([]);
  });

  it("takes over once the holder's lease lapses on the clock, and refreshes itself", async () => {
    const { tokens, store, provider, wakeups, coordinator } = setUp(async () => ({ tokens: tokens(HOUR, "at-2", "rt-2") }));
    store.leases.set(integration.id, { owner: "replica-b", expiresAt: clock.now().getTime() + LEASE_MS });
    const waiting = awaitedLater(coordinator.refresh(callerContext(), integration, expiring));
    await expect.poll(() => store.reads.tokenSets).toBeGreaterThanOrEqual(2);
    expect(provider.sent).toEqual([]);
    clock.advance(LEASE_MS);
    wakeups.wake(integration.id);
    expect(await waiting).toMatchObject({ refreshed: true, tokens: { accessToken: "at-2" } });
    expect(provider.sent).toEqual(["rt-1"]);
  });

  it("keeps the lease's sent mark when the provider's answer never came", async () => {
    // The request times out at the refresh's deadline: no time is left for another attempt.
    const { store, coordinator } = setUp(() => {
      clock.advance(BUDGET_MS);
      return Promise.reject(providerTimeout());
    });
    await expect(coordinator.refresh(callerContext(), integration, expiring)).rejects.toMatchObject({ reason: "PROVIDER_TIMEOUT" });
    expect(store.leases.get(integration.id)?.sent).toMatchObject({ version: 1, by: "replica-a" });
    expect(store.refreshFailures).toContainEqual({ id: integration.id, reason: "provider_unavailable" });
  });

  it("tries a refresh token a dead holder may have spent once only, and a refusal is ROTATED_TOKEN_LOST", async () => {
    const refused = new BrokerError("integration_needs_reauth", "refused", { reason: "INTEGRATION_NEEDS_REAUTH", metadata: { error: "invalid_grant" } });
    const { store, provider, auditLog, wakeups, coordinator } = setUp(() => Promise.reject(refused));
    store.leases.set(integration.id, { owner: "replica-dead", expiresAt: 0, sent: { version: 1, by: "replica-dead", at: new Date(0) } });
    const refreshing = awaitedLater(coordinator.refresh(callerContext(), integration, expiring));
    // The marking holder is given a lease and a refresh budget to store what it may keep; it never does.
    await expect.poll(() => store.reads.tokenSets).toBeGreaterThanOrEqual(1);
    expect(provider.sent).toEqual([]);
    clock.advance(LEASE_MS + BUDGET_MS);
    wakeups.wake(integration.id);
    await expect(refreshing).rejects.toMatchObject({ code: "integration_needs_reauth", reason: "ROTATED_TOKEN_LOST" });
    expect(provider.sent).toEqual(["rt-1"]);
    expect(store.records.get(integration.id)).toMatchObject({ status: "needs_reauth", statusReason: "rotated_token_lost" });
    expect(auditLog.events).toMatchObject([{ action: "token.refresh_failed", reason: "INTEGRATION_NEEDS_REAUTH", details: { cause: "rotated_token_lost" } }]);
  });

  it("gives up waiting for another replica after a lease and a refresh budget, with RetryInfo", async () => {
    const { store, wakeups, coordinator } = setUp(async () => Promise.reject(new Error("never sent")));
    // A holder that keeps renewing but never writes.
    store.leases.set(integration.id, { owner: "replica-b", expiresAt: Number.MAX_SAFE_INTEGER });
    const waiting = awaitedLater(coordinator.refresh(callerContext(), integration, expiring));
    await expect.poll(() => store.reads.tokenSets).toBeGreaterThanOrEqual(2);
    clock.advance(LEASE_MS + BUDGET_MS);
    wakeups.wake(integration.id);
    await expect(waiting).rejects.toMatchObject({ code: "provider_unavailable", retryAfterMs: 500 });
  });
});
