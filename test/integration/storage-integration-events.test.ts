/**
 * The change feed against real PostgreSQL: the trigger records each kind of change once, in
 * the transaction that makes it; ids are handed out in commit order, so a reader that moves its
 * cursor forward never skips a change committed late; retention moves the horizon.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIntegrationRepository, type IntegrationUpsertInput } from "../../src/storage/integration-repository.js";
import { createIntegrationEventStore } from "../../src/storage/integration-events.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { createLogger } from "../../src/observability/logger.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { awaitedLater, waitUntil } from "../support/wait-until.js";

let db: TestDatabase;
let repo: ReturnType<typeof createIntegrationRepository>;
let events: ReturnType<typeof createIntegrationEventStore>;

beforeAll(async () => {
  db = await createTestDatabase();
  repo = createIntegrationRepository(db.sql);
  events = createIntegrationEventStore(db.sql, createLogger({ level: "silent" }));
});
afterAll(async () => {
  await events?.close();
  await db?.drop();
});

function upsert(userId: string, id: string = randomUUID(), scopes = ["openid"]): IntegrationUpsertInput {
  return {
    id,
    userId,
    provider: "google",
    externalAccount: { id: `acct-${userId}`, name: userId, attributes: {} },
    grantedScopes: scopes,
    tokens: {
      accessTokenCiphertext: "local:v1:access",
      refreshTokenCiphertext: "local:v1:refresh",
      tokenType: "Bearer",
      expiresAt: new Date(Date.now() + 3_600_000),
      scopes,
    },
  };
}

async function typesFor(integrationId: string): Promise<string[]> {
  const rows = await db.sql<{ type: string }[]>`select type from integration_events where integration_id = ${integrationId} order by id`;
  return rows.map((row) => row.type);
}

describe("the change-feed trigger", () => {
  it("records created, refreshed, refresh_failed, needs_reauth, reauthorized, scopes_changed and deleted", async () => {
    const input = upsert("feed-user");
    await repo.upsertWithTokens(input);
    await createTokenSetRepository(db.sql).writeIfVersion(input.id, 1, {
      accessTokenCiphertext: "local:v1:a2",
      refreshTokenCiphertext: null,
      tokenType: "Bearer",
      expiresAt: new Date(Date.now() + 3_600_000),
      scopes: ["openid"],
    });
    await repo.recordRefreshFailure(input.id, "provider_unavailable", new Date(Date.now() + 60_000));
    await repo.markNeedsReauth(input.id, "invalid_grant");
    await repo.upsertWithTokens(upsert("feed-user", input.id));
    await repo.upsertWithTokens(upsert("feed-user", input.id));
    await repo.upsertWithTokens(upsert("feed-user", input.id, ["openid", "calendar.read"]));
    await repo.touchLastUsed(input.id, new Date(Date.now() + 120_000));
    await repo.markDeleted(input.id, "test");
    await repo.markDeleted(input.id, "test");
    expect(await typesFor(input.id)).toEqual([
      "created",
      "refreshed",
      "refresh_failed",
      "needs_reauth",
      "reauthorized",
      "reauthorized",
      "scopes_changed",
      "deleted",
    ]);
  });

  it("does not call a different order of the same scopes a change", async () => {
    const input = upsert("order-user", randomUUID(), ["openid", "email"]);
    await repo.upsertWithTokens(input);
    await db.sql`update integrations set granted_scopes = '{email,openid}' where id = ${input.id}`;
    expect(await typesFor(input.id)).toEqual(["created"]);
  });

  it("hands out ids in commit order: a change committed late is not skipped by a reader already past a later one", async () => {
    const slow = upsert("slow-writer");
    const fast = upsert("fast-writer");
    await repo.upsertWithTokens(slow);
    await repo.upsertWithTokens(fast);
    let cursor = await events.latest();
    const seen: string[] = [];
    const read = async () => {
      const page = await events.after({ after: cursor, limit: 100 });
      for (const change of page.changes) seen.push(change.integration.id);
      cursor = Math.max(cursor, page.scannedThrough);
    };

    // The slow transaction makes its change first and commits last: it stays open until the
    // fast one is seen waiting for the feed's lock and a reader has looked meanwhile.
    let commitSlow = () => {};
    const slowMayCommit = new Promise<void>((resolve) => (commitSlow = resolve));
    let slowChanged = false;
    const slowTx = awaitedLater(
      db.sql.begin(async (tx) => {
        await tx`update integrations set granted_scopes = '{openid,email}' where id = ${slow.id}`;
        slowChanged = true;
        await slowMayCommit;
      }),
    );
    try {
      await waitUntil(() => slowChanged, "the slow transaction's change");
      const fastTx = awaitedLater(
        db.sql.begin(async (tx) => {
          await tx`update integrations set granted_scopes = '{openid,email}' where id = ${fast.id}`;
        }),
      );
      await waitUntil(
        async () =>
          (await db.sql`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and wait_event = 'advisory'`).length > 0,
        "the fast transaction waits for the feed's lock",
      );
      await read();
      commitSlow();
      await Promise.all([slowTx, fastTx]);
    } finally {
      commitSlow();
    }
    await read();
    expect(seen).toEqual([slow.id, fast.id]);
  });

  it("delivers every change of many concurrent writers exactly once to a reader polling meanwhile", async () => {
    let cursor = await events.latest();
    const seen: number[] = [];
    let writing = true;
    const reader = (async () => {
      for (;;) {
        const done = !writing;
        const page = await events.after({ after: cursor, limit: 25 });
        for (const change of page.changes) seen.push(change.cursor);
        cursor = Math.max(cursor, page.scannedThrough);
        if (done && page.changes.length === 0) return;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const ids = await Promise.all(Array.from({ length: 60 }, (_, i) => repo.upsertWithTokens(upsert(`crowd-${i}`)).then((r) => r.integration.id)));
    writing = false;
    await reader;
    const expected = await db.sql<{ id: string }[]>`
      select id::text from integration_events where integration_id = any(${ids}::uuid[]) order by id`;
    expect(seen.filter((c) => expected.some((e) => Number(e.id) === c))).toEqual(expected.map((e) => Number(e.id)));
    expect(new Set(seen).size).toBe(seen.length);
  });
});

describe("retention", () => {
  it("purges old events in batches and moves the horizon to the last purged id", async () => {
    const input = upsert("old-user");
    await repo.upsertWithTokens(input);
    await db.sql`update integration_events set time = now() - interval '30 days' where integration_id = ${input.id}`;
    const [own] = await db.sql<{ id: string }[]>`select id::text from integration_events where integration_id = ${input.id}`;
    const purged = await events.purgeOlderThan(new Date(Date.now() - 7 * 86_400_000), 1_000);
    expect(purged).toBeGreaterThanOrEqual(1);
    expect(await events.horizon()).toBeGreaterThanOrEqual(Number(own?.id));
    expect(await events.latest()).toBeGreaterThanOrEqual(await events.horizon());
  });
});
