/**
 * The wedge of issue 17, at its source. Under load through a database cut and restore,
 * postgres.js 3.4.9 can lose a `sql.reserve()` request: it never settles, while the pool answers
 * every other query (seen with a pool of four open, idle connections and nothing queued, the
 * audit writer waiting in `reserve()` for minutes). The audit writer awaited it, every later
 * event queued behind that batch, and so every GetAccessToken of the replica (its `token.issued`
 * is durable before the answer) hung for good, while `/readyz`, ListProviders and GetStatus
 * worked. A batch now ends within its bound whatever the driver does, as UNAVAILABLE, and the
 * writer goes on with the next one.
 */
import type postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyAuditChain } from "../../src/storage/audit-chain.js";
import { createPostgresAuditLog } from "../../src/storage/audit-log.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { captureLogger } from "../support/log-capture.js";

describe("the audit writer when a connection reservation never settles", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("fails that batch's events as UNAVAILABLE within its bound and writes the next batch", async () => {
    let lose = true;
    // The real pool, except that its next reservation is lost the way the driver lost one.
    const sql = new Proxy(db.sql, {
      get(target, key, receiver) {
        if (key === "reserve" && lose) {
          lose = false;
          return () => new Promise<postgres.ReservedSql>(() => undefined);
        }
        return Reflect.get(target, key, receiver) as unknown;
      },
    });
    const { logger } = captureLogger();
    const log = createPostgresAuditLog({ sql, logger, lockTimeoutMs: 200, batchTimeoutMs: 400 });
    const started = performance.now();
    const failure = await log.record({ action: "token.issued", outcome: "success", requestId: "lost" }).catch((e: unknown) => e);
    // Ended by the 400 ms batch bound: a wait that ignored it would never end, and a loaded
    // machine's late timer stays far below this.
    expect(performance.now() - started).toBeLessThan(15_000);
    expect(failure).toMatchObject({ code: "database_unavailable", retryAfterMs: 1_000 });
    await log.record({ action: "token.issued", outcome: "success", requestId: "next" });
    const rows = await db.sql<{ request_id: string }[]>`select request_id from audit_events order by sequence`;
    expect(rows.map((row) => row.request_id)).toEqual(["next"]);
    expect((await verifyAuditChain(db.sql)).intact).toBe(true);
    await log.close();
  });
});
