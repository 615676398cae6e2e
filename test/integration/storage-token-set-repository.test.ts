/** Token sets, conditional writes, the refresh lease and proactive claims against real PostgreSQL. */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import type { EncryptedTokenWrite as EncryptedTokenWrite } from "../../src/domain/ports.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { TOKEN_CHANNEL } from "../../src/storage/token-notifications.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { waitUntil } from "../support/wait-until.js";

let db: TestDatabase;
let integrations: ReturnType<typeof createIntegrationRepository>;
let tokens: ReturnType<typeof createTokenSetRepository>;
beforeAll(async () => {
  db = await createTestDatabase();
  integrations = createIntegrationRepository(db.sql);
  tokens = createTokenSetRepository(db.sql);
});
afterAll(async () => {
  await db?.drop();
});

async function connect(options: { userId?: string; provider?: string; expiresInMs?: number; refresh?: string | null } = {}): Promise<string> {
  const { integration } = await integrations.upsertWithTokens({
    id: randomUUID(),
    userId: options.userId ?? "alice",
    provider: options.provider ?? "google",
    externalAccount: { id: randomUUID(), name: "", attributes: {} },
    grantedScopes: ["openid"],
    tokens: {
      accessTokenCiphertext: "local:v1:access-1",
      refreshTokenCiphertext: options.refresh === undefined ? "local:v1:refresh-1" : options.refresh,
      tokenType: "Bearer",
      expiresAt: new Date(Date.now() + (options.expiresInMs ?? 3_600_000)),
      scopes: ["openid"],
    },
  });
  // Tokens here live an hour: issued an hour before they expire (claims use the lifetime).
  await db.sql`update integrations set last_refreshed_at = now() + ${options.expiresInMs ?? 3_600_000} * interval '1 millisecond' - interval '1 hour'
               where id = ${integration.id}`;
  return integration.id;
}

function write(n: number, overrides: Partial<EncryptedTokenWrite> = {}): EncryptedTokenWrite {
  return {
    accessTokenCiphertext: `local:v1:access-${n}`,
    refreshTokenCiphertext: null,
    tokenType: "Bearer",
    expiresAt: new Date(Date.now() + 3_600_000 + n),
    scopes: ["openid", "email"],
    ...overrides,
  };
}

describe("get and writeIfVersion", () => {
  it("reads the token set with its version", async () => {
    const id = await connect();
    expect(await tokens.get(id)).toMatchObject({
      accessTokenCiphertext: "local:v1:access-1",
      refreshTokenCiphertext: "local:v1:refresh-1",
      tokenType: "Bearer",
      scopes: ["openid"],
      version: 1,
    });
    expect(await tokens.get(randomUUID())).toBeUndefined();
  });

  it("writes when the version still matches, keeps an unrotated refresh token, and updates the integration", async () => {
    const id = await connect();
    await integrations.recordRefreshFailure(id, "provider_unavailable", new Date(Date.now() + 60_000));
    expect(await tokens.writeIfVersion(id, 1, write(2))).toBe(2);
    expect(await tokens.get(id)).toMatchObject({ accessTokenCiphertext: "local:v1:access-2", refreshTokenCiphertext: "local:v1:refresh-1", version: 2 });
    const integration = await integrations.get(id);
    expect(integration).toMatchObject({ grantedScopes: ["openid", "email"], refreshFailureCount: 0, statusReason: "" });
    expect(integration?.lastRefreshedAt).toBeInstanceOf(Date);
    const [row] = await db.sql<{ next: Date | null }[]>`select next_refresh_attempt_at as next from integrations where id = ${id}`;
    expect(row?.next).toBeNull();
    // A rotated refresh token replaces the old one.
    expect(await tokens.writeIfVersion(id, 2, write(3, { refreshTokenCiphertext: "local:v1:refresh-3" }))).toBe(3);
    expect((await tokens.get(id))?.refreshTokenCiphertext).toBe("local:v1:refresh-3");
  });

  it("never lets a stale writer overwrite a newer token", async () => {
    const id = await connect();
    expect(await tokens.writeIfVersion(id, 1, write(2))).toBe(2);
    const refreshedAt = (await integrations.get(id))?.lastRefreshedAt;
    // A slow refresher that read version 1 comes back late.
    expect(await tokens.writeIfVersion(id, 1, write(9, { refreshTokenCiphertext: "local:v1:stale" }))).toBeUndefined();
    expect(await tokens.get(id)).toMatchObject({ accessTokenCiphertext: "local:v1:access-2", refreshTokenCiphertext: "local:v1:refresh-1", version: 2 });
    expect((await integrations.get(id))?.lastRefreshedAt).toEqual(refreshedAt);
  });

  it("lets exactly one of several concurrent writers of the same version win", async () => {
    const id = await connect();
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => tokens.writeIfVersion(id, 1, write(10 + n))));
    expect(results.filter((v) => v === 2)).toHaveLength(1);
    expect(results.filter((v) => v === undefined)).toHaveLength(4);
    const winner = results.findIndex((v) => v === 2) + 11;
    expect(await tokens.get(id)).toMatchObject({ accessTokenCiphertext: `local:v1:access-${winner}`, version: 2 });
  });

  it("announces a landed write at its commit and gives back the writer's lease, never another owner's", async () => {
    const heard: string[] = [];
    const listening = await db.sql.listen(TOKEN_CHANNEL, (payload) => heard.push(payload));
    try {
      const id = await connect();
      expect(await tokens.acquireLease(id, "replica-a", 30_000)).toMatchObject({ acquired: true });
      expect(await tokens.markRefreshSent(id, "replica-a", 1)).toBe(true);
      // Another owner's name releases nothing; the write still lands and is announced.
      expect(await tokens.writeIfVersion(id, 1, write(2), { releaseLeaseOf: "replica-b" })).toBe(2);
      expect(await tokens.acquireLease(id, "replica-b", 30_000)).toMatchObject({ acquired: false, holder: "replica-a" });
      expect(await tokens.writeIfVersion(id, 2, write(3), { releaseLeaseOf: "replica-a" })).toBe(3);
      const [row] = await db.sql<{ lease_owner: string | null; refresh_sent_by: string | null }[]>`
        select lease_owner, refresh_sent_by from token_sets where integration_id = ${id}`;
      expect(row).toEqual({ lease_owner: null, refresh_sent_by: null });
      // A refused write announces nothing and leaves the lease alone.
      expect(await tokens.acquireLease(id, "replica-b", 30_000)).toMatchObject({ acquired: true, version: 3 });
      expect(await tokens.writeIfVersion(id, 2, write(9), { releaseLeaseOf: "replica-b" })).toBeUndefined();
      expect(await tokens.acquireLease(id, "replica-a", 30_000)).toMatchObject({ acquired: false, holder: "replica-b" });
      await waitUntil(() => heard.length >= 2, "both landed writes announced");
      // The stale write's announcement would have come before this marker.
      await db.sql.notify(TOKEN_CHANNEL, "marker");
      await waitUntil(() => heard.includes("marker"), "the marker notification");
      expect(heard).toEqual([`${id}:2`, `${id}:3`, "marker"]);
    } finally {
      await listening.unlisten();
    }
  });

  it("writes nothing once the integration is deleted", async () => {
    const id = await connect();
    await integrations.markDeleted(id, "deleted_by_user");
    expect(await tokens.writeIfVersion(id, 1, write(2))).toBeUndefined();
    expect(await tokens.get(id)).toBeUndefined();
  });
});

describe("refresh lease", () => {
  it("refuses a second owner, renews for the holder, and frees on release by the holder only", async () => {
    const id = await connect();
    const first = await tokens.acquireLease(id, "replica-a", 30_000);
    expect(first).toMatchObject({ acquired: true, version: 1 });
    const refused = await tokens.acquireLease(id, "replica-b", 30_000);
    expect(refused).toMatchObject({ acquired: false, holder: "replica-a" });
    if (!refused.acquired && first.acquired) expect(refused.expiresAt?.getTime()).toBe(first.expiresAt.getTime());
    expect(await tokens.acquireLease(id, "replica-a", 30_000)).toMatchObject({ acquired: true });
    await tokens.releaseLease(id, "replica-b");
    expect(await tokens.acquireLease(id, "replica-b", 30_000)).toMatchObject({ acquired: false, holder: "replica-a" });
    await tokens.releaseLease(id, "replica-a");
    expect(await tokens.acquireLease(id, "replica-b", 30_000)).toMatchObject({ acquired: true, version: 1 });
  });

  it("lets anyone take over a lease whose holder died (expired)", async () => {
    const id = await connect();
    expect(await tokens.acquireLease(id, "dead-replica", 30_000)).toMatchObject({ acquired: true });
    expect(await tokens.acquireLease(id, "replica-b", 30_000)).toMatchObject({ acquired: false, holder: "dead-replica" });
    // The lease is judged by the database's clock; moving its expiry back is that clock moving on,
    // without the test waiting for it or racing a short lease against a loaded machine.
    const passes = (seconds: number) => db.sql`update token_sets set lease_expires_at = lease_expires_at - make_interval(secs => ${seconds}) where integration_id = ${id}`;
    await passes(29);
    expect(await tokens.acquireLease(id, "replica-b", 30_000)).toMatchObject({ acquired: false, holder: "dead-replica" });
    await passes(2);
    expect(await tokens.acquireLease(id, "replica-b", 30_000)).toMatchObject({ acquired: true });
    expect(await tokens.acquireLease(id, "dead-replica", 30_000)).toMatchObject({ acquired: false, holder: "replica-b" });
  });

  it("grants the lease to exactly one of many concurrent takers", async () => {
    const id = await connect();
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => tokens.acquireLease(id, `replica-${i}`, 30_000)));
    expect(results.filter((r) => r.acquired)).toHaveLength(1);
  });

  it("renews only its holder's lease: the heartbeat never takes a lease from another replica", async () => {
    const id = await connect();
    await tokens.acquireLease(id, "replica-a", 200);
    expect(await tokens.renewLease(id, "replica-b", 30_000)).toBe(false);
    expect(await tokens.renewLease(id, "replica-a", 30_000)).toBe(true);
    const [row] = await db.sql<{ lease_owner: string; lease_expires_at: Date }[]>`select lease_owner, lease_expires_at from token_sets where integration_id = ${id}`;
    expect(row?.lease_owner).toBe("replica-a");
    expect(row?.lease_expires_at.getTime()).toBeGreaterThan(Date.now() + 20_000);
  });

  it("hands a sent refresh request's mark to the next holder until a write or an informed release clears it", async () => {
    const id = await connect();
    await tokens.acquireLease(id, "replica-a", 30_000);
    expect(await tokens.markRefreshSent(id, "replica-b", 1)).toBe(false);
    expect(await tokens.markRefreshSent(id, "replica-a", 1)).toBe(true);
    // The holder died (its lease lapsed): the next holder learns what was sent, and by whom.
    await db.sql`update token_sets set lease_expires_at = now() - interval '1 second' where integration_id = ${id}`;
    const taken = await tokens.acquireLease(id, "replica-b", 30_000);
    expect(taken).toMatchObject({ acquired: true, version: 1, sent: { version: 1, by: "replica-a" } });
    // A holder that does not know the outcome (timeout) keeps the mark for the next one.
    await tokens.releaseLease(id, "replica-b", { keepSentMark: true });
    expect(await tokens.acquireLease(id, "replica-c", 30_000)).toMatchObject({ acquired: true, sent: { version: 1, by: "replica-a" } });
    // One that got an answer clears it.
    await tokens.releaseLease(id, "replica-c");
    expect(await tokens.acquireLease(id, "replica-c", 30_000)).toMatchObject({ acquired: true, sent: undefined });
    // The write of the refreshed set clears it too.
    await tokens.markRefreshSent(id, "replica-c", 1);
    expect(await tokens.writeIfVersion(id, 1, write(2))).toBe(2);
    expect(await tokens.acquireLease(id, "replica-c", 30_000)).toMatchObject({ acquired: true, version: 2, sent: undefined });
  });

  it("reports a missing token set as no holder", async () => {
    expect(await tokens.acquireLease(randomUUID(), "replica-a", 30_000)).toEqual({ acquired: false, holder: undefined, expiresAt: undefined });
  });
});

describe("claimExpiring", () => {
  it("claims only live, refreshable, unleased, not-backing-off tokens expiring within the window", async () => {
    const provider = `claim-${randomUUID().slice(0, 8)}`;
    const soon = await connect({ provider, expiresInMs: 60_000 });
    const expired = await connect({ provider, expiresInMs: -60_000 });
    const later = await connect({ provider, expiresInMs: 3_600_000 });
    const noRefresh = await connect({ provider, expiresInMs: 60_000, refresh: null });
    const reauth = await connect({ provider, expiresInMs: 60_000 });
    await integrations.markNeedsReauth(reauth, "invalid_grant");
    const deleted = await connect({ provider, expiresInMs: 60_000 });
    await integrations.markDeleted(deleted, "deleted_by_user");
    const backingOff = await connect({ provider, expiresInMs: 60_000 });
    await integrations.recordRefreshFailure(backingOff, "provider_unavailable", new Date(Date.now() + 60_000));
    const backedOff = await connect({ provider, expiresInMs: 60_000 });
    await integrations.recordRefreshFailure(backedOff, "provider_unavailable", new Date(Date.now() - 1_000));
    const leased = await connect({ provider, expiresInMs: 60_000 });
    await tokens.acquireLease(leased, "other-replica", 30_000);
    const leaseExpired = await connect({ provider, expiresInMs: 60_000 });
    await tokens.acquireLease(leaseExpired, "dead-replica", 30_000);
    // Its holder died a lease ago: the database's clock moved past the lease, without a wait.
    await db.sql`update token_sets set lease_expires_at = now() - interval '1 second' where integration_id = ${leaseExpired}`;

    const claimed = (await tokens.claimExpiring({ withinMs: 300_000, limit: 1_000, owner: "me", ttlMs: 30_000 })).filter((c) => c.provider === provider);
    expect(claimed.map((c) => c.integrationId).sort()).toEqual([soon, expired, backedOff, leaseExpired].sort());
    // Each claim is a taken lease, with the token set as it was taken: the refresh needs no second take.
    for (const claim of claimed) {
      expect(claim.lease).toMatchObject({ acquired: true, version: 1, sent: undefined, tokenSet: { accessTokenCiphertext: "local:v1:access-1", refreshTokenCiphertext: "local:v1:refresh-1", version: 1 } });
      expect(claim.lease.expiresAt.getTime()).toBeGreaterThan(Date.now());
    }
    // Claimed means leased to the claimer: it can go on under the lease, others cannot.
    expect(await tokens.acquireLease(soon, "me", 30_000)).toMatchObject({ acquired: true });
    expect(await tokens.acquireLease(soon, "other-replica", 30_000)).toMatchObject({ acquired: false, holder: "me" });
    expect((await tokens.claimExpiring({ withinMs: 300_000, limit: 1_000, owner: "you", ttlMs: 30_000 })).filter((c) => c.provider === provider)).toEqual([]);
    for (const left of [later, noRefresh, reauth, deleted, backingOff, leased]) {
      expect(claimed.map((c) => c.integrationId)).not.toContain(left);
    }
  });

  it("leaves out the integrations named in exclude (already claimed in this pass)", async () => {
    const provider = `exclude-${randomUUID().slice(0, 8)}`;
    const first = await connect({ provider, expiresInMs: 60_000 });
    const second = await connect({ provider, expiresInMs: 61_000 });
    await db.sql`update token_sets set lease_owner = null, lease_expires_at = null where integration_id = any(${[first, second]}::uuid[])`;
    const claimed = (await tokens.claimExpiring({ withinMs: 300_000, limit: 1_000, owner: "me", ttlMs: 30_000, exclude: [first] })).filter((c) => c.provider === provider);
    expect(claimed.map((c) => c.integrationId)).toEqual([second]);
    // Out of the way of the other claim tests, which take every free expiring token.
    expect(await tokens.acquireLease(first, "other-replica", 30_000)).toMatchObject({ acquired: true });
  });

  it("never hands the same integration to two concurrent claimers", async () => {
    const provider = `race-${randomUUID().slice(0, 8)}`;
    const ids = await Promise.all(Array.from({ length: 30 }, (_, i) => connect({ provider, expiresInMs: 10_000 + i * 1_000 })));
    for (let round = 0; round < 5; round++) {
      await db.sql`update token_sets set lease_owner = null, lease_expires_at = null where integration_id = any(${ids}::uuid[])`;
      const claims = await Promise.all(
        ["a", "b", "c"].map((owner) => tokens.claimExpiring({ withinMs: 120_000, limit: 15, owner: `${owner}-${round}`, ttlMs: 30_000 })),
      );
      const all = claims.flat().map((c) => c.integrationId);
      expect(new Set(all).size).toBe(all.length);
      expect(all.sort()).toEqual([...ids].sort());
      const owners = await db.sql<{ lease_owner: string; n: number }[]>`
        select lease_owner, count(*)::int as n from token_sets where integration_id = any(${ids}::uuid[]) group by lease_owner`;
      for (const [i, owner] of ["a", "b", "c"].entries()) {
        expect(owners.find((o) => o.lease_owner === `${owner}-${round}`)?.n ?? 0).toBe(claims[i]?.length);
      }
    }
  });
});
