/** Storage against real PostgreSQL: migrations, the integration and session repositories. */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBrokerError } from "../../src/domain/errors.js";
import { createDatabase, toBrokerError } from "../../src/storage/database.js";
import { createIntegrationRepository, type IntegrationUpsertInput } from "../../src/storage/integration-repository.js";
import { latestMigrationVersion, migrationStatus, runMigrations } from "../../src/storage/migrate.js";
import { createSessionRepository } from "../../src/storage/session-repository.js";
import { createLogger } from "../../src/observability/logger.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

function upsert(overrides: Partial<IntegrationUpsertInput> = {}): IntegrationUpsertInput {
  return {
    id: randomUUID(),
    userId: "alice",
    provider: "google",
    externalAccount: { id: "acct-1", name: "alice@example.com", attributes: { hd: "example.com" } },
    grantedScopes: ["openid", "email"],
    tokens: {
      accessTokenCiphertext: "local:v1:aaa",
      refreshTokenCiphertext: "local:v1:rrr",
      tokenType: "Bearer",
      expiresAt: new Date(Date.now() + 3600_000),
      scopes: ["openid", "email"],
    },
    ...overrides,
  };
}

describe("migrations", () => {
  it("apply once when two replicas start at the same time, and are idempotent", async () => {
    const fresh = await createTestDatabase({ migrate: false });
    try {
      const other = createDatabase({ url: fresh.url, logger: createLogger({ level: "silent" }) });
      const [a, b] = await Promise.all([runMigrations(fresh.sql), runMigrations(other.sql)]);
      expect([...a.applied, ...b.applied].sort()).toEqual([1]);
      expect((await runMigrations(fresh.sql)).applied).toEqual([]);
      expect(await migrationStatus(fresh.sql)).toEqual({ applied: latestMigrationVersion(), latest: latestMigrationVersion() });
      await other.close();
    } finally {
      await fresh.drop();
    }
  });

  it("refuse to run when an applied migration file was changed", async () => {
    const fresh = await createTestDatabase();
    try {
      await fresh.sql`update schema_migrations set checksum = 'tampered' where version = 1`;
      await expect(runMigrations(fresh.sql)).rejects.toThrow(/0001_initial.sql was changed after it was applied/);
    } finally {
      await fresh.drop();
    }
  });
});

describe("integration repository", () => {
  it("creates, then updates in place on reconnect, keeping the id", async () => {
    const repo = createIntegrationRepository(db.sql);
    const first = await repo.upsertWithTokens(upsert({ userId: "u-reconnect" }));
    expect(first.created).toBe(true);
    expect(first.integration.hasRefreshToken).toBe(true);
    const again = await repo.upsertWithTokens(
      upsert({
        id: first.integration.id,
        userId: "u-reconnect",
        grantedScopes: ["openid"],
        tokens: { ...upsert().tokens, refreshTokenCiphertext: null },
      }),
    );
    expect(again.created).toBe(false);
    expect(again.integration.id).toBe(first.integration.id);
    expect(again.integration.grantedScopes).toEqual(["openid"]);
    // No new refresh token on reconnect keeps the stored one.
    expect(again.integration.hasRefreshToken).toBe(true);
    const [tokens] = await db.sql<{ version: string; refresh_token_ciphertext: string }[]>`
      select version::text, refresh_token_ciphertext from token_sets where integration_id = ${first.integration.id}`;
    expect(tokens).toEqual({ version: "2", refresh_token_ciphertext: "local:v1:rrr" });
  });

  it("refuses a concurrent first connection under another id, naming the existing one", async () => {
    const repo = createIntegrationRepository(db.sql);
    const { integration } = await repo.upsertWithTokens(upsert({ userId: "u-race" }));
    const failure = await repo.upsertWithTokens(upsert({ userId: "u-race" })).catch((e: unknown) => e);
    expect(isBrokerError(failure, "already_exists")).toBe(true);
    expect((failure as { metadata: Record<string, string> }).metadata["integration_id"]).toBe(integration.id);
  });

  it("deletes idempotently, erasing the token set, and allows a new integration afterwards", async () => {
    const repo = createIntegrationRepository(db.sql);
    const { integration } = await repo.upsertWithTokens(upsert({ userId: "u-delete" }));
    const deleted = await repo.markDeleted(integration.id, "deleted_by_user");
    expect(deleted).toMatchObject({ alreadyDeleted: false, integration: { status: "deleted", hasRefreshToken: false } });
    expect((await db.sql`select 1 from token_sets where integration_id = ${integration.id}`).count).toBe(0);
    expect(await repo.markDeleted(integration.id, "again")).toMatchObject({ alreadyDeleted: true });
    expect(await repo.findLive("u-delete", "google", "acct-1")).toBeUndefined();
    const next = await repo.upsertWithTokens(upsert({ userId: "u-delete" }));
    expect(next.created).toBe(true);
    expect(next.integration.id).not.toBe(integration.id);
  });

  it("paginates newest first without duplicates or skips while rows are inserted", async () => {
    const repo = createIntegrationRepository(db.sql);
    const userId = "u-pages";
    const before: string[] = [];
    for (let i = 0; i < 12; i++) {
      const { integration } = await repo.upsertWithTokens(
        upsert({ userId, externalAccount: { id: `acct-${i}`, name: "", attributes: {} } }),
      );
      before.push(integration.id);
    }
    const seen: string[] = [];
    let after: { createdAt: Date; id: string } | undefined;
    let page = 0;
    do {
      const result = await repo.list({ userId, pageSize: 5, after });
      seen.push(...result.items.map((i) => i.id));
      // Concurrent inserts land before the cursor (newer) and must not disturb later pages.
      await repo.upsertWithTokens(upsert({ userId, externalAccount: { id: `late-${page++}`, name: "", attributes: {} } }));
      after = result.next;
    } while (after);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.filter((id) => before.includes(id)).sort()).toEqual([...before].sort());
  });

  it("counts integrations by provider and status", async () => {
    const repo = createIntegrationRepository(db.sql);
    const { integration } = await repo.upsertWithTokens(upsert({ userId: "u-count", provider: "notion" }));
    await repo.markNeedsReauth(integration.id, "invalid_grant");
    const counts = await repo.countByStatus();
    expect(counts).toContainEqual({ provider: "notion", status: "needs_reauth", count: 1 });
    expect((await repo.get(integration.id))?.statusReason).toBe("invalid_grant");
  });
});

describe("session repository", () => {
  it("hands a session out exactly once, even to concurrent callers", async () => {
    const sessions = createSessionRepository(db.sql);
    const now = new Date();
    await sessions.create({
      id: randomUUID(),
      stateHash: "hash-1",
      userId: "alice",
      provider: "google",
      requestedScopes: ["openid"],
      returnTo: "http://127.0.0.1:8080/",
      codeVerifierCiphertext: "local:v1:xyz",
      nonce: "n",
      createdAt: now,
      expiresAt: new Date(now.getTime() + 600_000),
    });
    const results = await Promise.all(Array.from({ length: 8 }, () => sessions.consume("hash-1")));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(results.find(Boolean)).toMatchObject({ userId: "alice", provider: "google", codeVerifierCiphertext: "local:v1:xyz" });
  });
});

describe("database edge", () => {
  it("turns an unreachable server into database_unavailable quickly, without the password", async () => {
    const database = createDatabase({
      url: "postgres://user:hunter2@127.0.0.1:1/none",
      logger: createLogger({ level: "silent" }),
      connectTimeoutSeconds: 2,
    });
    const started = Date.now();
    const failure = await database.ping().catch((e: unknown) => e);
    expect(isBrokerError(failure, "database_unavailable")).toBe(true);
    expect(String((failure as Error).message)).not.toContain("hunter2");
    expect(Date.now() - started).toBeLessThan(5_000);
    await database.close(1);
    expect(toBrokerError(Object.assign(new Error("dup"), { code: "23505" }), "store").code).toBe("already_exists");
  });
});
