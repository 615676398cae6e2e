/**
 * The token service's facade with in-memory fakes of its ports (test/support/token-fakes.ts):
 * the warm and cold paths, the single flight of a refresh, the wait for another replica's
 * refresh, custody of a rotated refresh token the database would not take, a refused grant, a
 * provider's pause and a caller's deadline. No PostgreSQL, no sockets.
 */
import { afterEach, describe, expect, it } from "vitest";
import { BrokerError, isBrokerError } from "../../src/domain/errors.js";
import type { ProviderGrant } from "../../src/domain/ports.js";
import { PROVIDER_RETRY_AFTER_KEY } from "../../src/domain/tokens/provider-pause.js";
import { createTokenService, type TokenService, type TokenServiceDeps } from "../../src/domain/tokens/token-service.js";
import type { TokenSet } from "../../src/domain/types.js";
import {
  callerContext,
  fakeCipher,
  fakeProvider,
  fakeTokenStore,
  inMemoryChangeFeed,
  integrationFixture,
  NOW,
  recordingAudit,
  silentLogger,
} from "../support/token-fakes.js";
import { manualClock } from "../support/manual-clock.js";
import { awaitedLater } from "../support/wait-until.js";

const HOUR = 3_600_000;
const clock = manualClock(NOW.getTime());
const integration = integrationFixture();
const services: TokenService[] = [];

function tokensValidFor(ms: number, accessToken: string, refreshToken?: string): TokenSet {
  return { accessToken, tokenType: "Bearer", expiresAt: new Date(clock.now().getTime() + ms), scopes: ["read"], refreshToken };
}

function grant(accessToken: string, refreshToken?: string): ProviderGrant {
  return { tokens: tokensValidFor(HOUR, accessToken, refreshToken) };
}

function setUp(answer: (refreshToken: string, call: number) => Promise<ProviderGrant>, extra: Partial<TokenServiceDeps> = {}) {
  const changes = inMemoryChangeFeed();
  const store = fakeTokenStore(clock, changes);
  const cipher = fakeCipher();
  const provider = fakeProvider(answer);
  const audit = recordingAudit();
  const service = createTokenService({
    store,
    cipher,
    providers: { get: (id) => (id === provider.id ? provider : undefined) },
    clock,
    logger: silentLogger,
    replicaId: "replica-a",
    changes,
    audit,
    settings: { cacheMaxEntries: 100, leaseSeconds: 30, writeRetry: { attempts: 2, baseMs: 1, capMs: 1 } },
    ...extra,
  });
  services.push(service);
  return { store, cipher, provider, audit, changes, service };
}

const refreshEvents = (events: readonly { action: string }[]) => events.filter((e) => e.action.startsWith("token.refresh"));

afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()));
});

describe("token service facade", () => {
  it("answers a warm call from the cache without reading the store or decrypting", async () => {
    const { store, cipher, provider, service } = setUp(async () => grant("never"));
    store.put(integration, tokensValidFor(HOUR, "at-1", "rt-1"));
    await service.tokenFor(callerContext(), integration, 60_000, []);
    const reads = store.reads.tokenSets;
    const decrypts = cipher.decryptBatches;
    const warm = await service.tokenFor(callerContext(), integration, 60_000, []);
    expect(warm.tokens.accessToken).toBe("at-1");
    expect(warm.tokens.refreshToken).toBeUndefined();
    expect([store.reads.tokenSets, cipher.decryptBatches]).toEqual([reads, decrypts]);
    expect(provider.sent).toEqual([]);
  });

  it("audits a token set once per caller and token version: repeats are counted, a refreshed set is disclosed anew", async () => {
    const { store, audit, service } = setUp(async () => grant("at-2", "rt-2"));
    store.put(integration, tokensValidFor(2 * 60_000, "at-1", "rt-1"));
    for (let i = 0; i < 3; i++) await service.tokenFor(callerContext({ requestId: `req-${i}` }), integration, 60_000, ["read"]);
    // A longer min_valid_for makes the cached set fall short: refreshed to version 2.
    await service.tokenFor(callerContext({ requestId: "req-refreshed" }), integration, 5 * 60_000, ["read"]);
    const disclosures = audit.events.filter((e) => e.action === "token.issued" || e.action === "token.reissued");
    // The old version's counts went out when the refresh replaced it, before the new first disclosure.
    expect(disclosures.map((e) => [e.action, e.requestId, e.details?.["token_version"], e.details?.["count"]])).toEqual([
      ["token.issued", "req-0", "1", undefined],
      ["token.reissued", "req-2", "1", "2"],
      ["token.issued", "req-refreshed", "2", undefined],
    ]);
  });

  it("looks an integration up once for many concurrent callers, and a failed lookup is not shared with later ones", async () => {
    const { store, service } = setUp(async () => grant("never"));
    store.put(integration, tokensValidFor(HOUR, "at-1", "rt-1"));
    const get = store.integrations.get.bind(store.integrations);
    let reads = 0;
    let failNext = true;
    store.integrations.get = async (id) => {
      reads += 1;
      // Answered on a later turn, as PostgreSQL does: every caller below arrives while it is in flight.
      await new Promise((resolve) => setImmediate(resolve));
      if (failNext) {
        failNext = false;
        throw new BrokerError("database_unavailable", "the database did not answer", { retryAfterMs: 100 });
      }
      return get(id);
    };
    const failed = await Promise.allSettled(Array.from({ length: 100 }, () => service.resolve({ integrationId: integration.id })));
    expect(failed.every((r) => r.status === "rejected" && isBrokerError(r.reason, "database_unavailable"))).toBe(true);
    expect(reads).toBe(1);
    const answers = await Promise.all(Array.from({ length: 100 }, () => service.resolve({ integrationId: integration.id })));
    expect(answers.every((a) => a.id === integration.id)).toBe(true);
    expect(reads).toBe(2);
  });

  it("loads a cold token set once for many concurrent callers: one read, one batch decrypt", async () => {
    const { store, cipher, service } = setUp(async () => grant("never"));
    store.put(integration, tokensValidFor(HOUR, "at-1", "rt-1"));
    const answers = await Promise.all(Array.from({ length: 100 }, () => service.tokenFor(callerContext(), integration, 60_000, [])));
    expect(new Set(answers.map((a) => a.tokens.accessToken))).toEqual(new Set(["at-1"]));
    expect([store.reads.tokenSets, cipher.decryptBatches]).toEqual([1, 1]);
  });

  it("refreshes once at the provider for 1,000 concurrent callers of an expiring token", async () => {
    const { store, provider, audit, service } = setUp(async () => grant("at-2", "rt-2"));
    store.put(integration, tokensValidFor(10_000, "at-1", "rt-1"));
    const answers = await Promise.all(Array.from({ length: 1_000 }, () => service.tokenFor(callerContext(), integration, 60_000, [])));
    expect(provider.sent).toEqual(["rt-1"]);
    expect(new Set(answers.map((a) => a.tokens.accessToken))).toEqual(new Set(["at-2"]));
    expect(store.plaintext(integration.id)).toEqual({ accessToken: "at-2", refreshToken: "rt-2", version: 2 });
    expect(refreshEvents(audit.events)).toMatchObject([{ action: "token.refreshed", outcome: "success", details: { trigger: "expiring", rotated: "true" } }]);
    expect(store.leases.has(integration.id)).toBe(false);
  });

  it("waits while another replica holds the lease, then answers with the token it stored", async () => {
    const { store, provider, changes, service } = setUp(async () => grant("never"));
    store.put(integration, tokensValidFor(10_000, "at-1", "rt-1"));
    store.leases.set(integration.id, { owner: "replica-b", expiresAt: clock.now().getTime() + 30_000 });
    const waiting = awaitedLater(service.tokenFor(callerContext(), integration, 60_000, []));
    await expect.poll(() => store.reads.tokenSets).toBeGreaterThanOrEqual(2);
    // Replica b stores its refreshed set and announces it.
    store.put(integration, tokensValidFor(HOUR, "at-from-b", "rt-from-b"));
    store.leases.delete(integration.id);
    await changes.publish({ integrationId: integration.id, version: 2 });
    expect((await waiting).tokens.accessToken).toBe("at-from-b");
    expect(provider.sent).toEqual([]);
  });

  it("keeps a rotated refresh token the database would not take, with the lease, and stores it once the database is back", async () => {
    const { store, provider, audit, service } = setUp(async () => grant("at-2", "rt-rotated"));
    store.put(integration, tokensValidFor(10_000, "at-1", "rt-1"));
    store.failWrites = true;
    await expect(service.tokenFor(callerContext(), integration, 60_000, [])).rejects.toMatchObject({ code: "database_unavailable" });
    // The lease stays with this replica: the stored refresh token no longer works at the provider.
    expect(store.leases.get(integration.id)?.owner).toBe("replica-a");
    expect(refreshEvents(audit.events)).toEqual([]);
    store.failWrites = false;
    await expect.poll(() => store.plaintext(integration.id)?.refreshToken, { timeout: 5_000 }).toBe("rt-rotated");
    expect(provider.sent).toEqual(["rt-1"]);
    expect(refreshEvents(audit.events)).toMatchObject([{ action: "token.refreshed", details: { rotated: "true", stored_after_retry: "true" } }]);
    expect((await service.tokenFor(callerContext(), integration, 60_000, [])).tokens.accessToken).toBe("at-2");
  });

  it("marks the integration NEEDS_REAUTH when the provider answers invalid_grant", async () => {
    const refused = new BrokerError("integration_needs_reauth", "refused", { reason: "INTEGRATION_NEEDS_REAUTH", metadata: { error: "invalid_grant" } });
    const { store, audit, changes, service } = setUp(async () => Promise.reject(refused));
    store.put(integration, tokensValidFor(10_000, "at-1", "rt-1"));
    await expect(service.tokenFor(callerContext(), integration, 60_000, [])).rejects.toMatchObject({ code: "integration_needs_reauth", reason: "INTEGRATION_NEEDS_REAUTH" });
    expect(store.records.get(integration.id)).toMatchObject({ status: "needs_reauth", statusReason: "invalid_grant" });
    expect(changes.published).toContainEqual({ integrationId: integration.id, version: 0 });
    expect(refreshEvents(audit.events)).toMatchObject([{ action: "token.refresh_failed", reason: "INTEGRATION_NEEDS_REAUTH", details: { cause: "invalid_grant" } }]);
    await expect(service.resolve({ integrationId: integration.id })).rejects.toMatchObject({ code: "integration_needs_reauth" });
  });

  it("honours a provider's pause: nothing more is sent until it ends", async () => {
    const limited = new BrokerError("provider_rate_limited", "slow down", { reason: "PROVIDER_RATE_LIMITED", metadata: { [PROVIDER_RETRY_AFTER_KEY]: "20" } });
    const { store, provider, service } = setUp(async (_token, call) => (call === 1 ? Promise.reject(limited) : grant("at-2")));
    store.put(integration, tokensValidFor(10_000, "at-1", "rt-1"));
    await expect(service.tokenFor(callerContext(), integration, 60_000, [])).rejects.toMatchObject({ code: "provider_rate_limited", retryAfterMs: 20_000 });
    await expect(service.tokenFor(callerContext(), integration, 60_000, [])).rejects.toMatchObject({ code: "provider_rate_limited", metadata: { paused: "true" } });
    expect(provider.sent).toHaveLength(1);
    expect(service.providerPauses().get("sandbox")).toBe(20_000);
    expect(store.refreshFailures).toContainEqual({ id: integration.id, reason: "provider_rate_limited" });
    clock.advance(20_000);
    expect((await service.tokenFor(callerContext(), integration, 60_000, [])).tokens.accessToken).toBe("at-2");
    expect(provider.sent).toHaveLength(2);
  });

  it("ends a caller's wait at its deadline, read on the service's clock, while the provider does not answer", async () => {
    let answer: (grant: ProviderGrant) => void = () => undefined;
    const { store, service } = setUp(() => new Promise((resolve) => (answer = resolve)));
    store.put(integration, tokensValidFor(10_000, "at-1", "rt-1"));
    // The clock runs years ahead of the wall clock: a deadline read on the wall clock would not end the wait in 50 ms.
    const ctx = callerContext({ deadline: clock.now().getTime() + 50 });
    await expect(service.tokenFor(ctx, integration, 60_000, [])).rejects.toMatchObject({ code: "deadline_exceeded" });
    // The shared refresh goes on without the caller and its result is stored.
    answer(grant("at-2", "rt-2"));
    await expect.poll(() => store.plaintext(integration.id)?.accessToken).toBe("at-2");
  });
});
