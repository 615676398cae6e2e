/**
 * GetAccessToken's lifecycle against real PostgreSQL and a Microsoft-like provider peer that
 * rotates refresh tokens (replaying a rotated one revokes the whole grant): one provider call
 * per expiry across concurrent callers and several replicas (separate pools, replica ids and
 * caches), rotation stored, invalid_grant → NEEDS_REAUTH with no further calls, provider
 * outages mapped to UNAVAILABLE within the deadline.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomNonce, randomPKCECodeVerifier, randomState } from "openid-client";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { BrokerError, isBrokerError } from "../../src/domain/errors.js";
import type { Cipher, ProviderClient } from "../../src/domain/ports.js";
import type { RequestContext } from "../../src/domain/types.js";
import { createTokenService, type TokenService } from "../../src/domain/tokens/token-service.js";
import { createDatabase, type Database } from "../../src/storage/database.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createTokenNotifications, type TokenNotifications } from "../../src/storage/token-notifications.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { systemClock } from "../../src/domain/ports.js";
import { startProactiveRefresher } from "../../src/jobs/proactive-refresh.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { type OidcPeer } from "../support/peers/oidc-peer.js";
import { captureLogger } from "../support/log-capture.js";
import { startMicrosoftPeer } from "../support/peers/microsoft-peer.js";
import { awaitedLater } from "../support/wait-until.js";

const REDIRECT_URI = "http://127.0.0.1:18080/oauth/callback/microsoft";
const SECRET = "ms~secret.value_1";

const ctx: RequestContext = {
  principal: { kind: "admin", subject: "test", issuer: "test" },
  requestId: "r",
  peer: "127.0.0.1:1",
};

interface Replica {
  readonly database: Database;
  readonly notifications: TokenNotifications;
  readonly tokens: TokenService;
  /** Integration reads its token service made: the signal that a call got past its first step. */
  integrationReads(): number;
  /** Refresh leases its token service gave back early (`releaseLease`). */
  leaseReleases(): number;
}

describe("token lifecycle", () => {
  const { logger, log } = captureLogger();
  let db: TestDatabase;
  let dataDir: string;
  let peer: OidcPeer;
  let client: ProviderClient;
  let cipher: Cipher;
  const replicas: Replica[] = [];

  async function replica(name: string): Promise<Replica> {
    const database = createDatabase({ url: db.url, poolSize: 4, logger });
    const notifications = await createTokenNotifications(database.sql, logger);
    const integrations = createIntegrationRepository(database.sql);
    let integrationReads = 0;
    let leaseReleases = 0;
    const tokenSets = createTokenSetRepository(database.sql);
    const tokens = createTokenService({
      store: {
        integrations: {
          ...integrations,
          get: (...args) => {
            integrationReads += 1;
            return integrations.get(...args);
          },
        },
        tokenSets: {
          ...tokenSets,
          releaseLease: (...args) => {
            leaseReleases += 1;
            return tokenSets.releaseLease(...args);
          },
        },
      },
      cipher,
      providers: { get: (id) => (id === "microsoft" ? client : undefined) },
      clock: systemClock,
      logger,
      replicaId: name,
      changes: notifications,
      // The bound on one database call is not under test here (token-wait-bounds.test.ts tests it):
      // one that a storm of callers queued on a loaded machine's pool stays inside.
      settings: { cacheMaxEntries: 100, leaseSeconds: 5, breakerFailureThreshold: 3, breakerCooldownMs: 60_000, databaseCallTimeoutMs: 20_000 },
    });
    const r = { database, notifications, tokens, integrationReads: () => integrationReads, leaseReleases: () => leaseReleases };
    replicas.push(r);
    return r;
  }

  /** Connects `username` at the peer and stores the grant, returning the integration id. */
  async function connect(username: string): Promise<string> {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const nonce = randomNonce();
    const scopes = ["User.Read"];
    const url = await client.authorizationUrl({ state, scopes, redirectUri: REDIRECT_URI, codeVerifier, nonce });
    const callbackUrl = await peer.driveConsent(url, { username });
    const grant = await client.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier, nonce, requestedScopes: scopes });
    const id = randomUUID();
    const [access, refresh] = await cipher.encryptBatch([
      { plaintext: grant.tokens.accessToken, context: id },
      { plaintext: grant.tokens.refreshToken ?? "", context: id },
    ]);
    await createIntegrationRepository(db.sql).upsertWithTokens({
      id,
      userId: username,
      provider: "microsoft",
      externalAccount: grant.account ?? { id: username, name: username, attributes: {} },
      grantedScopes: grant.tokens.scopes,
      tokens: {
        accessTokenCiphertext: access!,
        refreshTokenCiphertext: refresh!,
        tokenType: "Bearer",
        expiresAt: grant.tokens.expiresAt,
        scopes: grant.tokens.scopes,
      },
    });
    return id;
  }

  const expire = (id: string) => db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = ${id}`;

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-tokens-"));
    cipher = await createLocalKeyringCipher({ dataDir, logger });
    ({ peer, client } = await startMicrosoftPeer({ secret: SECRET, redirectUri: REDIRECT_URI, logger }));
    await replica("replica-a");
    await replica("replica-b");
    await replica("replica-c");
  });

  afterAll(async () => {
    for (const r of replicas) {
      r.tokens.close();
      await r.notifications.close();
      await r.database.close(1);
    }
    await peer?.close();
    await db?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("serves concurrent callers on three replicas with exactly one provider refresh per expiry", async () => {
    const id = await connect("storm");
    for (let round = 0; round < 2; round++) {
      // Time passing: the stored token expires and the cached copies with it.
      await expire(id);
      for (const r of replicas) r.tokens.evict(id);
      const before = peer.tokenRequests();
      const results = await Promise.all(
        Array.from({ length: 300 }, async (_, i) => {
          const r = replicas[i % replicas.length]!;
          const integration = await r.tokens.resolve({ integrationId: id });
          return r.tokens.tokenFor(ctx, integration, 60_000, []);
        }),
      );
      expect(peer.tokenRequests() - before).toBe(1);
      expect(new Set(results.map((r) => r.tokens.accessToken)).size).toBe(1);
      expect(results[0]!.tokens.expiresAt.getTime()).toBeGreaterThan(Date.now() + 3000_000);
    }
    // The rotated refresh token was stored: the grant is still alive (a replayed one would kill it).
    const [row] = await db.sql`select version::int as version, status from token_sets t join integrations i on i.id = t.integration_id where i.id = ${id}`;
    expect(row).toMatchObject({ version: 3, status: "active" });
  });

  it("answers from the cache without touching the database or provider while the token is valid", async () => {
    const id = await connect("cached");
    const r = replicas[0]!;
    const integration = await r.tokens.resolve({ integrationId: id });
    const first = await r.tokens.tokenFor(ctx, integration, 60_000, []);
    await db.sql`update token_sets set access_token_ciphertext = 'local:v1:garbage' where integration_id = ${id}`;
    const second = await r.tokens.tokenFor(ctx, integration, 60_000, []);
    expect(second.tokens.accessToken).toBe(first.tokens.accessToken);
  });

  it("refuses scopes that were not granted with SCOPE_NOT_GRANTED", async () => {
    const id = await connect("scopes");
    const r = replicas[0]!;
    const integration = await r.tokens.resolve({ integrationId: id });
    const failure = await r.tokens.tokenFor(ctx, integration, 60_000, ["Mail.Send"]).catch((e: unknown) => e);
    expect(isBrokerError(failure, "scope_not_granted")).toBe(true);
    expect((failure as { metadata: Record<string, string> }).metadata["missing_scopes"]).toBe("Mail.Send");
  });

  it("marks a revoked grant NEEDS_REAUTH and stops calling the provider", async () => {
    const id = await connect("revoked");
    await peer.revokeGrantsFor("revoked");
    await expire(id);
    const r = replicas[1]!;
    const integration = await r.tokens.resolve({ integrationId: id });
    const failure = await r.tokens.tokenFor(ctx, integration, 60_000, []).catch((e: unknown) => e);
    expect(isBrokerError(failure, "integration_needs_reauth")).toBe(true);
    const before = peer.tokenRequests();
    const again = await r.tokens.resolve({ integrationId: id }).catch((e: unknown) => e);
    expect(isBrokerError(again, "integration_needs_reauth")).toBe(true);
    expect(peer.tokenRequests()).toBe(before);
    const [row] = await db.sql`select status, status_reason from integrations where id = ${id}`;
    expect(row?.["status"]).toBe("needs_reauth");
  });

  it("maps a failing provider to UNAVAILABLE within the caller's deadline, then opens the circuit", async () => {
    const id = await connect("outage");
    await expire(id);
    peer.setTokenEndpointFault("503");
    try {
      const r = replicas[2]!;
      const integration = await r.tokens.resolve({ integrationId: id });
      // A deadline only a hang reaches: the three failures that open the breaker end the call
      // first, and an answer of provider_unavailable (not deadline_exceeded) is one within it.
      const failure = await r.tokens.tokenFor({ ...ctx, deadline: Date.now() + 30_000 }, integration, 60_000, []).catch((e: unknown) => e);
      expect(isBrokerError(failure, "provider_unavailable")).toBe(true);
      expect((failure as { retryAfterMs?: number }).retryAfterMs).toBeGreaterThan(0);
      // Three failures open the breaker: the next call fails fast without a provider request.
      expect(r.tokens.circuitStates().get("microsoft")).toBe("open");
      const before = peer.tokenRequests();
      const fast = await r.tokens.tokenFor(ctx, integration, 60_000, []).catch((e: unknown) => e);
      expect(isBrokerError(fast, "provider_unavailable")).toBe(true);
      expect(peer.tokenRequests()).toBe(before);
    } finally {
      peer.setTokenEndpointFault("none");
    }
  });

  it("refreshes tokens ahead of expiry from every replica's refresher, each integration once", async () => {
    const ids = [await connect("ahead-1"), await connect("ahead-2"), await connect("ahead-3")];
    // As if issued an hour ago: one minute of the hour is left.
    for (const id of ids) {
      await db.sql`update token_sets set expires_at = now() + interval '60 seconds' where integration_id = ${id}`;
      await db.sql`update integrations set last_refreshed_at = now() - interval '59 minutes' where id = ${id}`;
    }
    // A token that only ever lives 2 minutes, refreshed a moment ago, is not due yet (half-life).
    const shortLived = await connect("short-lived");
    await db.sql`update token_sets set expires_at = now() + interval '110 seconds' where integration_id = ${shortLived}`;
    await db.sql`update integrations set last_refreshed_at = now() - interval '10 seconds' where id = ${shortLived}`;
    const before = peer.tokenRequests();
    // Replica c's circuit for this provider is open after the outage test: a and b share the work.
    const refreshers = replicas.slice(0, 2).map((r, index) =>
      startProactiveRefresher({
        claim: (request) => createTokenSetRepository(r.database.sql).claimExpiring(request),
        tokenService: r.tokens,
        logger,
        replicaId: `replica-${"abc"[index]}`,
        windowMs: 300_000,
        intervalMs: 60_000,
        leaseMs: 5_000,
        schedule: false,
      }),
    );
    const refreshed = await Promise.all(refreshers.map((r) => r.runOnce()));
    expect(refreshed.reduce((a, b) => a + b, 0)).toBe(3);
    expect(peer.tokenRequests() - before).toBe(3);
    const rows = await db.sql<{ expires_at: Date }[]>`select expires_at from token_sets where integration_id = any(${ids})`;
    for (const row of rows) expect(row.expires_at.getTime()).toBeGreaterThan(Date.now() + 3000_000);
    // Nothing left in the window: a second pass does nothing.
    expect(await refreshers[0]!.runOnce()).toBe(0);
    await Promise.all(refreshers.map((r) => r.stop()));
  });

  it("claims only active integrations, and gives back the lease of a claimed one that is not", async () => {
    const id = await connect("ahead-revoked");
    await expire(id);
    await db.sql`update integrations set status = 'needs_reauth' where id = ${id}`;
    const tokenSets = createTokenSetRepository(db.sql);
    // Only this one may be claimed: the other tests' integrations stay unleased.
    const others = await db.sql<{ integration_id: string }[]>`select integration_id from token_sets where integration_id <> ${id}`;
    const claim = { withinMs: 300_000, limit: 10, owner: "replica-a", ttlMs: 60_000, exclude: others.map((row) => row.integration_id) };
    expect(await tokenSets.claimExpiring(claim)).toEqual([]);
    await db.sql`update integrations set status = 'active' where id = ${id}`;
    const [claimed] = await tokenSets.claimExpiring(claim);
    if (!claimed) throw new Error("an active integration whose token expires is claimed");
    // The claim returns the row as it read it, the same as a read of the integration.
    expect(claimed.integration).toEqual(await createIntegrationRepository(db.sql).get(id));
    // A claimed row not active (as a claim type admits) changes nothing at the provider.
    await db.sql`update integrations set status = 'needs_reauth' where id = ${id}`;
    const before = peer.tokenRequests();
    expect(await replicas[0]!.tokens.refreshAhead({ ...claimed, integration: { ...claimed.integration, status: "needs_reauth" } }, 300_000)).toBe(false);
    expect(peer.tokenRequests()).toBe(before);
    const [row] = await db.sql<{ lease_owner: string | null }[]>`select lease_owner from token_sets where integration_id = ${id}`;
    expect(row?.lease_owner).toBeNull();
  });

  it("keeps the lease while a refresh on the same replica runs under it, even if the integration stopped being active", async () => {
    const id = await connect("ahead-racing");
    await expire(id);
    const replica = replicas[0]!;
    replica.tokens.evict(id);
    const integration = await replica.tokens.resolve({ integrationId: id });
    peer.setTokenEndpointFault("hold");
    try {
      const refreshing = replica.tokens.tokenFor(ctx, integration, 60_000, []).catch((error: unknown) => error);
      await expect.poll(() => peer.heldRequests(), { timeout: 5_000 }).toBe(1);
      // The refresher on the same replica (same lease owner) now finds the integration revoked.
      await db.sql`update integrations set status = 'needs_reauth' where id = ${id}`;
      const lease = await createTokenSetRepository(db.sql).acquireLease(id, "replica-a", 60_000);
      if (!lease.acquired) throw new Error("the lease is replica a's own");
      const latest = await createIntegrationRepository(db.sql).get(id);
      if (!latest) throw new Error("the integration is still there");
      const releasesBefore = replica.leaseReleases();
      let settled = false;
      const ahead = awaitedLater(replica.tokens.refreshAhead({ integration: latest, lease }, 300_000).finally(() => (settled = true)));
      const [held] = await db.sql<{ lease_owner: string | null }[]>`select lease_owner from token_sets where integration_id = ${id}`;
      // Released now, another replica could refresh with the refresh token the provider is rotating:
      // the refresher joins the refresh running here instead, and learns the outcome with it.
      expect(held?.lease_owner).toBe("replica-a");
      expect(replica.leaseReleases()).toBe(releasesBefore);
      expect(settled).toBe(false);
      peer.releaseHeldRequests();
      expect(await ahead).toBe(false);
      await refreshing;
      const [after] = await db.sql<{ lease_owner: string | null }[]>`select lease_owner from token_sets where integration_id = ${id}`;
      expect(after?.lease_owner).toBeNull();
    } finally {
      peer.setTokenEndpointFault("none");
      peer.releaseHeldRequests();
    }
  });

  it("refuses a cached integration no sooner than an unknown one: both cost a database read", async () => {
    const id = await connect("timing-owner");
    const integrations = createIntegrationRepository(db.sql);
    let reads = 0;
    let databaseDown = false;
    const tokens = createTokenService({
      store: {
        integrations: {
          ...integrations,
          get: (integrationId) => {
            reads += 1;
            if (databaseDown) return Promise.reject(new BrokerError("database_unavailable", "the database is unreachable"));
            return integrations.get(integrationId);
          },
        },
        tokenSets: createTokenSetRepository(db.sql),
      },
      cipher,
      providers: { get: () => client },
      clock: systemClock,
      logger,
      replicaId: "timing",
      settings: { cacheMaxEntries: 10, leaseSeconds: 5, breakerFailureThreshold: 3, breakerCooldownMs: 60_000 },
    });
    try {
      await tokens.resolve({ integrationId: id });
      expect(reads).toBe(1);
      await tokens.resolve({ integrationId: id });
      expect(reads).toBe(1);
      const refuse = () => {
        throw new Error("not yours");
      };
      await expect(tokens.resolve({ integrationId: id }, refuse)).rejects.toThrow("not yours");
      expect(reads).toBe(2);
      await expect(tokens.resolve({ integrationId: randomUUID() }, refuse)).rejects.toMatchObject({ code: "not_found" });
      expect(reads).toBe(3);
      // Nor does the outcome differ while that read fails: both get the database's error.
      databaseDown = true;
      await expect(tokens.resolve({ integrationId: id }, refuse)).rejects.toMatchObject({ code: "database_unavailable" });
      await expect(tokens.resolve({ integrationId: randomUUID() }, refuse)).rejects.toMatchObject({ code: "database_unavailable" });
    } finally {
      await tokens.close();
    }
  });

  it("never logs a token", async () => {
    const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from token_sets`;
    expect(row?.n).toBeGreaterThan(0);
    for (const line of log.text().split("\n")) expect(line).not.toMatch(/"(access|refresh)_?[Tt]oken":"(?!\[redacted\])/);
  });
});
