/** The pool and the PostgreSQL failure mapping, against real servers (and a closed port). */
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBrokerError, type BrokerError } from "../../src/domain/errors.js";
import { createLogger } from "../../src/observability/logger.js";
import { createDatabase, toBrokerError } from "../../src/storage/database.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { waitUntil } from "../support/wait-until.js";

const logger = createLogger({ level: "silent" });
let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** The mapped failure of a query that must fail. */
function failure(query: Promise<unknown>, what = "read"): Promise<BrokerError> {
  return query.then(
    () => {
      throw new Error("the query was expected to fail");
    },
    (error: unknown) => toBrokerError(error, what),
  );
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === "object" && address ? address.port : 1;
}

describe("createDatabase", () => {
  it("pings a reachable database", async () => {
    const database = createDatabase({ url: db.url, logger, poolSize: 2 });
    try {
      const ms = await database.ping();
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThan(2_000);
    } finally {
      await database.close(1);
    }
  });

  it("turns a refused connection into database_unavailable quickly, without the password", async () => {
    const database = createDatabase({ url: `postgres://user:hunter2@127.0.0.1:${await closedPort()}/none`, logger, connectTimeoutSeconds: 2 });
    try {
      const started = Date.now();
      const failure = await database.ping().catch((e: unknown) => e);
      expect(isBrokerError(failure, "database_unavailable")).toBe(true);
      expect((failure as { retryAfterMs?: number }).retryAfterMs).toBeGreaterThan(0);
      expect((failure as Error).message).not.toContain("hunter2");
      expect(((failure as Error).cause as { code?: string }).code).toBe("ECONNREFUSED");
      const query = await database.sql`select 1`.catch((e: unknown) => toBrokerError(e, "read"));
      expect(isBrokerError(query, "database_unavailable")).toBe(true);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await database.close(1);
    }
  });

  it("bounds ping when the server accepts the connection but never answers", async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const address = silent.address();
    const port = typeof address === "object" && address ? address.port : 1;
    const database = createDatabase({ url: `postgres://user@127.0.0.1:${port}/none`, logger, connectTimeoutSeconds: 30 });
    try {
      const started = Date.now();
      const failure = await database.ping(300).catch((e: unknown) => e);
      expect(isBrokerError(failure, "database_unavailable")).toBe(true);
      expect(Date.now() - started).toBeLessThan(1_500);
    } finally {
      await database.close(0);
      silent.close();
    }
  });

  it("maps an administrator's shutdown of the connection to database_unavailable, and never loses the next query", async () => {
    // A terminated backend makes the next write fail with ECONNRESET; a query issued right
    // after that must still settle, with its own result (see ClosingSocket in database.ts).
    const database = createDatabase({ url: db.url, logger, poolSize: 1 });
    try {
      /** Long enough that only a lost query, not a loaded machine's reconnect, reaches it. */
      const settles = <T,>(query: Promise<T>) => Promise.race([query, new Promise((resolve) => setTimeout(() => resolve("hung"), 10_000))]);
      for (let round = 0; round < 5; round++) {
        // Shut down while a query runs on the connection: that query always sees the shutdown.
        const [busy] = await database.sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
        const running = failure(database.sql`select pg_sleep(60)`);
        await waitUntil(
          async () => (await db.sql`select 1 from pg_stat_activity where pid = ${busy?.pid ?? 0} and state = 'active' and query like '%pg_sleep%'`).length === 1,
          "the query runs on the backend",
        );
        await db.sql`select pg_terminate_backend(${busy?.pid ?? 0})`;
        expect((await running).code).toBe("database_unavailable");
        expect(await settles(database.sql<{ n: number }[]>`select ${round}::int as n`.then((rows) => rows[0]?.n))).toBe(round);

        // Shut down while the connection is idle: whether the next write still meets the dead socket
        // (ECONNRESET) or the pool noticed the close first is a race, so either outcome is allowed,
        // but nothing else, and the query after it must still settle with its own result.
        const [idle] = await database.sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
        await db.sql`select pg_terminate_backend(${idle?.pid ?? 0})`;
        // Not a wait for a result: it lets the backend exit, so the write usually meets the dead
        // socket, the path ClosingSocket in database.ts exists for.
        await new Promise((resolve) => setTimeout(resolve, 5));
        const first = await database.sql`select 1`.then(
          () => "answered",
          (error: unknown) => toBrokerError(error, "read").code,
        );
        expect(["answered", "database_unavailable"]).toContain(first);
        expect(await settles(database.sql<{ n: number }[]>`select ${round}::int as n`.then((rows) => rows[0]?.n))).toBe(round);
      }
      expect(await database.ping()).toBeGreaterThan(0);
    } finally {
      await database.close(1);
    }
  });

  it("maps constraint and data errors from the server", async () => {
    const id = "5f0b1c1e-0000-4000-8000-000000000001";
    await db.sql`insert into integrations (id, user_id, provider, external_account_id) values (${id}, 'u', 'p', 'a')`;
    expect((await failure(db.sql`insert into integrations (id, user_id, provider, external_account_id) values (${id}, 'u', 'p', 'b')`)).code).toBe(
      "already_exists",
    );
    expect((await failure(db.sql`update integrations set status = 'bogus' where id = ${id}`)).code).toBe("invalid_argument");
    expect((await failure(db.sql`select 1 from integrations where id = ${"not-a-uuid"}`)).code).toBe("invalid_argument");
    const broken = await failure(db.sql`select * from no_such_table`);
    expect(broken.code).toBe("internal");
    expect(broken.message).not.toContain("no_such_table");
    expect((broken.cause as { code?: string }).code).toBe("42P01");
  });
});
