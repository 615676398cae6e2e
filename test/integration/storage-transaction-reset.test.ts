/**
 * A transaction whose backend dies mid-query (failover, pg_terminate_backend, a proxy reset):
 * the transaction rejects, the process survives, and the pool serves the next query. Without
 * the postgres.js patch (scripts/patch-postgres.mjs) the driver's own ROLLBACK is written from a
 * timer to the closed socket and throws outside every promise (porsager/postgres#1208).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import { createDatabase } from "../../src/storage/database.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { waitUntil } from "../support/wait-until.js";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe("a transaction whose connection dies", () => {
  it("rejects, leaves the process alive, and the same pool answers afterwards", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on("uncaughtException", onUncaught);
    const database = createDatabase({ url: db.url, logger: createLogger({ level: "silent" }), poolSize: 1 });
    try {
      for (let round = 0; round < 3; round++) {
        let pid: number | undefined;
        const transaction = database.sql.begin(async (tx) => {
          const [row] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid`;
          pid = row?.pid;
          // Longer than the test may run: only the termination below ends it.
          await tx`select pg_sleep(60)`;
        });
        const outcome = transaction.then(
          () => "committed",
          () => "rejected",
        );
        await waitUntil(() => pid !== undefined, "the transaction reports its backend");
        await db.sql`select pg_terminate_backend(${pid ?? 0})`;
        expect(await outcome).toBe("rejected");
        // The driver's deferred writes run from setImmediate, queued before the transaction
        // settled: one turn of the check phase later they have run (and thrown, unpatched).
        await new Promise((resolve) => setImmediate(resolve));
        const [after] = await database.sql<{ one: number }[]>`select 1 as one`;
        expect(after?.one).toBe(1);
      }
      expect(uncaught).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
      await database.close(1);
    }
  }, 30_000);
});
