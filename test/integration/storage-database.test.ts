/** The pool and the PostgreSQL failure mapping, against real servers (and a closed port). */
import { connect, createServer, type AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBrokerError, type BrokerError } from "../../src/domain/errors.js";
import { createLogger } from "../../src/observability/logger.js";
import { createDatabase, toBrokerError } from "../../src/storage/database.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { awaitedLater, waitUntil } from "../support/wait-until.js";

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

/**
 * A relay between the pool and PostgreSQL that can hide a server's goodbye: once `conceal()`
 * has been called, what the server then sends on the connections open at that moment (its FATAL
 * message, its FIN) is not passed on, and the client's next write on such a connection is
 * answered with a reset, as a socket whose peer is gone answers. So the client meets the dead
 * socket on its next query every time, instead of only when it writes before the close arrives.
 */
async function concealingRelay(url: string) {
  const target = new URL(url);
  const pairs = new Set<{ concealed: boolean; upstreamGone: boolean; destroy(): void }>();
  let hiddenClosures = 0;
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    const pair = { concealed: false, upstreamGone: false, destroy: () => (client.destroy(), upstream.destroy()) };
    pairs.add(pair);
    client.on("error", () => undefined);
    upstream.on("error", () => undefined);
    upstream.on("data", (chunk: Buffer) => {
      if (!pair.concealed) client.write(chunk);
    });
    upstream.on("close", () => {
      pair.upstreamGone = true;
      if (pair.concealed) hiddenClosures += 1;
      else client.destroy();
    });
    client.on("data", (chunk: Buffer) => {
      if (pair.upstreamGone) client.resetAndDestroy();
      else upstream.write(chunk);
    });
    client.on("close", () => {
      pairs.delete(pair);
      upstream.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const via = new URL(url);
  via.hostname = "127.0.0.1";
  via.port = String((server.address() as AddressInfo).port);
  return {
    url: via.toString(),
    conceal: () => pairs.forEach((pair) => (pair.concealed = true)),
    /** Server-side closes hidden so far: the signal that a concealed connection's server is gone. */
    hiddenClosures: () => hiddenClosures,
    async close() {
      pairs.forEach((pair) => pair.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("createDatabase", () => {
  it("pings a reachable database", async () => {
    const database = createDatabase({ url: db.url, logger, poolSize: 2 });
    try {
      // A bound of its own, far above the default: a first connection on a loaded machine may take
      // longer than 2 s, and this test is about the answer, not about the machine's speed.
      const ms = await database.ping(20_000);
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThan(20_000);
    } finally {
      await database.close(1);
    }
  });

  it("turns a refused connection into database_unavailable at once, without the password", async () => {
    // A connect timeout no loaded machine's answer approaches: a refusal that waited for it
    // instead of failing on ECONNREFUSED would exceed the bound below.
    const database = createDatabase({ url: `postgres://user:hunter2@127.0.0.1:${await closedPort()}/none`, logger, connectTimeoutSeconds: 20 });
    try {
      const started = Date.now();
      const failure = await database.ping().catch((e: unknown) => e);
      expect(isBrokerError(failure, "database_unavailable")).toBe(true);
      expect((failure as { retryAfterMs?: number }).retryAfterMs).toBeGreaterThan(0);
      expect((failure as Error).message).not.toContain("hunter2");
      expect(((failure as Error).cause as { code?: string }).code).toBe("ECONNREFUSED");
      const query = await database.sql`select 1`.catch((e: unknown) => toBrokerError(e, "read"));
      expect(isBrokerError(query, "database_unavailable")).toBe(true);
      expect(Date.now() - started).toBeLessThan(20_000);
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
      // The ping's own bound ended it, not the 30 s connect timeout: a bound between the two
      // that only a ping waiting for the connection attempt exceeds.
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await database.close(0);
      silent.close();
    }
  });

  it("maps an administrator's shutdown of the connection to database_unavailable, and never loses the next query", async () => {
    // A terminated backend makes the next write fail with ECONNRESET; a query issued right
    // after that must still settle, with its own result (see ClosingSocket in database.ts).
    const relay = await concealingRelay(db.url);
    const database = createDatabase({ url: relay.url, logger, poolSize: 1 });
    try {
      /** Long enough that only a lost query, not a loaded machine's reconnect, reaches it. */
      const settles = <T,>(query: Promise<T>) => Promise.race([query, new Promise((resolve) => setTimeout(() => resolve("hung"), 10_000))]);
      for (let round = 0; round < 5; round++) {
        // Shut down while a query runs on the connection: that query always sees the shutdown.
        const [busy] = await database.sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
        const running = awaitedLater(failure(database.sql`select pg_sleep(60)`));
        await waitUntil(
          async () => (await db.sql`select 1 from pg_stat_activity where pid = ${busy?.pid ?? 0} and state = 'active' and query like '%pg_sleep%'`).length === 1,
          "the query runs on the backend",
        );
        await db.sql`select pg_terminate_backend(${busy?.pid ?? 0})`;
        expect((await running).code).toBe("database_unavailable");
        expect(await settles(database.sql<{ n: number }[]>`select ${round}::int as n`.then((rows) => rows[0]?.n))).toBe(round);

        // Shut down while the connection is idle, before the pool hears of it: the next query is
        // written to the dead socket (the path ClosingSocket in database.ts exists for), fails as
        // database_unavailable, and the query after it must still settle with its own result.
        const [idle] = await database.sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
        const hiddenBefore = relay.hiddenClosures();
        relay.conceal();
        await db.sql`select pg_terminate_backend(${idle?.pid ?? 0})`;
        await waitUntil(() => relay.hiddenClosures() > hiddenBefore, "the terminated backend closes its connection");
        const first = await failure(database.sql`select 1`);
        expect(first.code).toBe("database_unavailable");
        expect((first.cause as { code?: string }).code).toBe("ECONNRESET");
        expect(await settles(database.sql<{ n: number }[]>`select ${round}::int as n`.then((rows) => rows[0]?.n))).toBe(round);
      }
      expect(await database.ping()).toBeGreaterThan(0);
    } finally {
      await database.close(1);
      await relay.close();
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
