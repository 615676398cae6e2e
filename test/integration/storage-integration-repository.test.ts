/** The integration repository against real PostgreSQL. */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBrokerError } from "../../src/domain/errors.js";
import { createIntegrationRepository, type IntegrationUpsertInput } from "../../src/storage/integration-repository.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

let db: TestDatabase;
let repo: ReturnType<typeof createIntegrationRepository>;
beforeAll(async () => {
  db = await createTestDatabase();
  repo = createIntegrationRepository(db.sql);
});
afterAll(async () => {
  await db?.drop();
});

function upsert(userId: string, overrides: Partial<IntegrationUpsertInput> = {}): IntegrationUpsertInput {
  return {
    id: randomUUID(),
    userId,
    provider: "google",
    externalAccount: { id: "acct-1", name: "alice@example.com", attributes: { hd: "example.com" } },
    grantedScopes: ["openid", "email"],
    tokens: {
      accessTokenCiphertext: "local:v1:access",
      refreshTokenCiphertext: "local:v1:refresh",
      tokenType: "Bearer",
      expiresAt: new Date(Date.now() + 3_600_000),
      scopes: ["openid", "email"],
    },
    ...overrides,
  };
}

const account = (id: string) => ({ id, name: id, attributes: {} });

async function tokenRow(integrationId: string) {
  const [row] = await db.sql<{ version: string; access_token_ciphertext: string; refresh_token_ciphertext: string | null }[]>`
    select version::text, access_token_ciphertext, refresh_token_ciphertext from token_sets where integration_id = ${integrationId}`;
  return row ? { ...row } : undefined;
}

describe("upsertWithTokens", () => {
  it("creates an integration with its token set, mapped to the domain type", async () => {
    const input = upsert("u-create");
    const { integration, created } = await repo.upsertWithTokens(input);
    expect(created).toBe(true);
    expect(integration).toMatchObject({
      id: input.id,
      userId: "u-create",
      provider: "google",
      externalAccount: { id: "acct-1", name: "alice@example.com", attributes: { hd: "example.com" } },
      grantedScopes: ["openid", "email"],
      status: "active",
      statusReason: "",
      refreshFailureCount: 0,
      hasRefreshToken: true,
      lastUsedAt: null,
    });
    expect(integration.accessTokenExpiresAt?.getTime()).toBe(input.tokens.expiresAt.getTime());
    expect(integration.createdAt).toBeInstanceOf(Date);
    expect(await tokenRow(input.id)).toMatchObject({ version: "1", access_token_ciphertext: "local:v1:access" });
    expect(await repo.get(input.id)).toEqual(integration);
  });

  it("updates in place on reconnect: same id, active again, failures cleared, token version bumped", async () => {
    const first = await repo.upsertWithTokens(upsert("u-reconnect"));
    const id = first.integration.id;
    await repo.recordRefreshFailure(id, "provider_unavailable", new Date(Date.now() + 60_000));
    await repo.markNeedsReauth(id, "invalid_grant");
    expect(await repo.get(id)).toMatchObject({ status: "needs_reauth", statusReason: "invalid_grant", refreshFailureCount: 1 });

    const found = await repo.findLive("u-reconnect", "google", "acct-1");
    expect(found?.id).toBe(id);
    const again = await repo.upsertWithTokens(
      upsert("u-reconnect", {
        id,
        externalAccount: { id: "acct-1", name: "renamed", attributes: {} },
        grantedScopes: ["openid"],
        tokens: { ...upsert("x").tokens, accessTokenCiphertext: "local:v1:access-2", refreshTokenCiphertext: null },
      }),
    );
    expect(again.created).toBe(false);
    expect(again.integration).toMatchObject({
      id,
      status: "active",
      statusReason: "",
      refreshFailureCount: 0,
      grantedScopes: ["openid"],
      externalAccount: { name: "renamed", attributes: {} },
      // No refresh token in the new grant keeps the stored one.
      hasRefreshToken: true,
    });
    expect(again.integration.createdAt).toEqual(first.integration.createdAt);
    expect(await tokenRow(id)).toEqual({ version: "2", access_token_ciphertext: "local:v1:access-2", refresh_token_ciphertext: "local:v1:refresh" });
    const [backoff] = await db.sql<{ next: Date | null }[]>`select next_refresh_attempt_at as next from integrations where id = ${id}`;
    expect(backoff?.next).toBeNull();
  });

  it("lets exactly one of two concurrent first connections create the row; the other learns the winner's id", async () => {
    const a = upsert("u-race");
    const b = upsert("u-race");
    const results = await Promise.allSettled([repo.upsertWithTokens(a), repo.upsertWithTokens(b)]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    const winner = (won[0] as PromiseFulfilledResult<{ integration: { id: string }; created: boolean }>).value;
    expect(winner.created).toBe(true);
    expect(isBrokerError(lost[0]?.reason, "already_exists")).toBe(true);
    expect(lost[0]?.reason.metadata["integration_id"]).toBe(winner.integration.id);
    // The loser's tokens were not written anywhere.
    const loserId = winner.integration.id === a.id ? b.id : a.id;
    expect(await repo.get(loserId)).toBeUndefined();
    // Retrying with the winner's id (tokens re-encrypted for it) updates that row.
    const retried = await repo.upsertWithTokens(upsert("u-race", { id: winner.integration.id }));
    expect(retried).toMatchObject({ created: false, integration: { id: winner.integration.id } });
    expect((await repo.findForUser("u-race", "google")).map((i) => i.id)).toEqual([winner.integration.id]);
  });
});

describe("markDeleted", () => {
  it("erases the token set, leaves a tombstone, is idempotent, and frees the account for a new integration", async () => {
    const { integration } = await repo.upsertWithTokens(upsert("u-delete"));
    const deleted = await repo.markDeleted(integration.id, "deleted_by_user");
    expect(deleted?.alreadyDeleted).toBe(false);
    expect(deleted?.integration).toMatchObject({ id: integration.id, status: "deleted", statusReason: "deleted_by_user", hasRefreshToken: false, accessTokenExpiresAt: null });
    expect(await tokenRow(integration.id)).toBeUndefined();
    expect(await repo.markDeleted(integration.id, "again")).toMatchObject({ alreadyDeleted: true, integration: { statusReason: "deleted_by_user" } });
    expect(await repo.markDeleted(randomUUID(), "none")).toBeUndefined();
    expect(await repo.findLive("u-delete", "google", "acct-1")).toBeUndefined();
    expect(await repo.findForUser("u-delete", "google")).toEqual([]);
    expect((await repo.get(integration.id))?.status).toBe("deleted");

    const next = await repo.upsertWithTokens(upsert("u-delete"));
    expect(next.created).toBe(true);
    expect(next.integration.id).not.toBe(integration.id);
    // A late reconnect still carrying the tombstone's id cannot revive it.
    const late = await repo.upsertWithTokens(upsert("u-delete", { id: integration.id, externalAccount: account("acct-2") })).catch((e: unknown) => e);
    expect(isBrokerError(late, "already_exists")).toBe(true);
  });

  it("purges tombstones older than the cut-off, at most `limit` at a time", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { integration } = await repo.upsertWithTokens(upsert("u-purge", { externalAccount: account(`p-${i}`) }));
      await repo.markDeleted(integration.id, "deleted_by_user");
      ids.push(integration.id);
    }
    const live = await repo.upsertWithTokens(upsert("u-purge", { externalAccount: account("p-live") }));
    await db.sql`update integrations set deleted_at = now() - interval '40 days' where id = any(${ids.slice(0, 2)}::uuid[])`;
    const cutoff = new Date(Date.now() - 30 * 86_400_000);
    expect(await repo.purgeTombstones(cutoff, 1)).toBe(1);
    expect(await repo.purgeTombstones(cutoff, 10)).toBe(1);
    expect(await repo.purgeTombstones(cutoff, 10)).toBe(0);
    expect(await repo.get(ids[0] ?? "")).toBeUndefined();
    expect(await repo.get(ids[1] ?? "")).toBeUndefined();
    expect((await repo.get(ids[2] ?? ""))?.status).toBe("deleted");
    expect((await repo.get(live.integration.id))?.status).toBe("active");
  });
});

describe("list", () => {
  async function pages(query: Parameters<typeof repo.list>[0], between?: (page: number) => Promise<void>): Promise<string[]> {
    const seen: string[] = [];
    let after = query.after;
    for (let page = 0; page < 100; page++) {
      const result = await repo.list({ ...query, after });
      seen.push(...result.items.map((i) => i.id));
      if (!result.next) break;
      await between?.(page);
      after = result.next;
    }
    return seen;
  }

  it("pages newest first with no duplicates and no skips while rows are inserted between pages", async () => {
    const userId = "u-pages";
    // Created concurrently so several share a millisecond: the id breaks the tie.
    const before = await Promise.all(
      Array.from({ length: 23 }, (_, i) => repo.upsertWithTokens(upsert(userId, { externalAccount: account(`acct-${i}`) }))),
    );
    const expected = await db.sql<{ id: string }[]>`
      select id from integrations where user_id = ${userId} order by created_at desc, id desc`;
    let late = 0;
    const seen = await pages({ userId, pageSize: 4 }, async () => {
      await Promise.all([
        repo.upsertWithTokens(upsert(userId, { externalAccount: account(`late-${late++}`) })),
        repo.upsertWithTokens(upsert(userId, { externalAccount: account(`late-${late++}`) })),
      ]);
    });
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.filter((id) => before.some((b) => b.integration.id === id))).toEqual(expected.map((r) => r.id));
    // What makes the cursor exact: created_at carries no more precision than a JavaScript Date.
    const [finer] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from integrations where created_at <> date_trunc('milliseconds', created_at)`;
    expect(finer?.n).toBe(0);
  });

  it("stays exact when many rows share one created_at", async () => {
    const userId = "u-ties";
    const created = await Promise.all(
      Array.from({ length: 9 }, (_, i) => repo.upsertWithTokens(upsert(userId, { externalAccount: account(`tie-${i}`) }))),
    );
    await db.sql`update integrations set created_at = '2030-01-01T00:00:00.123Z' where user_id = ${userId}`;
    const seen = await pages({ userId, pageSize: 2 });
    expect(seen).toEqual(created.map((c) => c.integration.id).sort().reverse());
  });

  it("filters by user, provider, providers and status; tombstones only when asked for", async () => {
    const userId = "u-filter";
    const google = await repo.upsertWithTokens(upsert(userId, { externalAccount: account("g") }));
    const notion = await repo.upsertWithTokens(upsert(userId, { provider: "notion", externalAccount: account("n") }));
    const stale = await repo.upsertWithTokens(upsert(userId, { provider: "notion", externalAccount: account("n2") }));
    const gone = await repo.upsertWithTokens(upsert(userId, { externalAccount: account("gone") }));
    await repo.markNeedsReauth(stale.integration.id, "invalid_grant");
    await repo.markDeleted(gone.integration.id, "deleted_by_user");
    const ids = async (query: Omit<Parameters<typeof repo.list>[0], "pageSize" | "userId">) =>
      (await repo.list({ userId, pageSize: 50, ...query })).items.map((i) => i.id).sort();
    const sorted = (...list: { integration: { id: string } }[]) => list.map((x) => x.integration.id).sort();

    expect(await ids({})).toEqual(sorted(google, notion, stale));
    expect(await ids({ provider: "notion" })).toEqual(sorted(notion, stale));
    expect(await ids({ providers: ["google"] })).toEqual(sorted(google));
    expect(await ids({ providers: [] })).toEqual([]);
    expect(await ids({ status: "needs_reauth" })).toEqual(sorted(stale));
    expect(await ids({ status: "deleted" })).toEqual(sorted(gone));
    expect(await ids({ status: ["active", "deleted"] })).toEqual(sorted(google, notion, gone));
    expect((await repo.list({ userId: "nobody", pageSize: 5 })).items).toEqual([]);
  });
});

describe("bookkeeping", () => {
  it("finds a user's live integrations, optionally for one account", async () => {
    const a = await repo.upsertWithTokens(upsert("u-find", { externalAccount: account("a") }));
    const b = await repo.upsertWithTokens(upsert("u-find", { externalAccount: account("b") }));
    await repo.upsertWithTokens(upsert("u-find", { provider: "notion", externalAccount: account("a") }));
    expect((await repo.findForUser("u-find", "google")).map((i) => i.id).sort()).toEqual([a.integration.id, b.integration.id].sort());
    expect((await repo.findForUser("u-find", "google", "b")).map((i) => i.id)).toEqual([b.integration.id]);
    expect(await repo.findForUser("u-find", "google", "zzz")).toEqual([]);
  });

  it("counts integrations by provider and status, and those holding no refresh token", async () => {
    const one = await repo.upsertWithTokens(upsert("u-count", { provider: "count-test", externalAccount: account("1") }));
    await repo.upsertWithTokens(upsert("u-count", { provider: "count-test", externalAccount: account("2") }));
    const three = await repo.upsertWithTokens(upsert("u-count", { provider: "count-test", externalAccount: account("3") }));
    const withoutRefresh = upsert("u-count", { provider: "count-test", externalAccount: account("4") });
    await repo.upsertWithTokens({ ...withoutRefresh, tokens: { ...withoutRefresh.tokens, refreshTokenCiphertext: null } });
    await repo.markNeedsReauth(one.integration.id, "invalid_grant");
    await repo.markDeleted(three.integration.id, "deleted_by_user");
    const counts = (await repo.countByStatus()).filter((c) => c.provider === "count-test");
    // A tombstone has no token set: it is not counted as lacking a refresh token.
    expect(counts).toEqual([
      { provider: "count-test", status: "active", count: 2, withoutRefreshToken: 1 },
      { provider: "count-test", status: "deleted", count: 1, withoutRefreshToken: 0 },
      { provider: "count-test", status: "needs_reauth", count: 1, withoutRefreshToken: 0 },
    ]);
  });

  it("marks for re-authorization only what is active, and counts refresh failures with their backoff", async () => {
    const { integration } = await repo.upsertWithTokens(upsert("u-reauth"));
    const retryAt = new Date(Date.now() + 120_000);
    await repo.recordRefreshFailure(integration.id, "provider_unavailable", retryAt);
    await repo.recordRefreshFailure(integration.id, "provider_rate_limited", retryAt);
    expect(await repo.get(integration.id)).toMatchObject({ refreshFailureCount: 2, statusReason: "provider_rate_limited", status: "active" });
    const [row] = await db.sql<{ next: Date }[]>`select next_refresh_attempt_at as next from integrations where id = ${integration.id}`;
    expect(row?.next.getTime()).toBe(retryAt.getTime());
    await repo.markDeleted(integration.id, "deleted_by_user");
    await repo.markNeedsReauth(integration.id, "invalid_grant");
    expect((await repo.get(integration.id))?.status).toBe("deleted");
  });

  it("records the last use at most once a minute", async () => {
    const { integration } = await repo.upsertWithTokens(upsert("u-used"));
    const t0 = new Date("2030-01-01T10:00:00.000Z");
    await repo.touchLastUsed(integration.id, t0);
    await repo.touchLastUsed(integration.id, new Date(t0.getTime() + 30_000));
    expect((await repo.get(integration.id))?.lastUsedAt).toEqual(t0);
    const later = new Date(t0.getTime() + 61_000);
    await repo.touchLastUsed(integration.id, later);
    expect((await repo.get(integration.id))?.lastUsedAt).toEqual(later);
  });

  it("updates account details and scopes only for the same external account", async () => {
    const { integration } = await repo.upsertWithTokens(upsert("u-sync"));
    expect(await repo.updateAccount(integration.id, { id: "acct-1", name: "new name", attributes: { tid: "t1" } }, ["openid"])).toBe(true);
    expect(await repo.get(integration.id)).toMatchObject({ externalAccount: { id: "acct-1", name: "new name", attributes: { tid: "t1" } }, grantedScopes: ["openid"] });
    expect(await repo.updateAccount(integration.id, { id: "someone-else", name: "x", attributes: {} }, [])).toBe(false);
    expect((await repo.get(integration.id))?.externalAccount.name).toBe("new name");
  });

  it("turns a malformed id into invalid_argument", async () => {
    const failure = await repo.get("not-a-uuid").catch((e: unknown) => e);
    expect(isBrokerError(failure, "invalid_argument")).toBe(true);
  });
});
