/**
 * The audit writer against a real PostgreSQL: gap-free sequence across two replicas (separate
 * pools), group commit, and an operation failing when its batch cannot be written.
 */
import postgres from "postgres";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BrokerError } from "../../src/domain/errors.js";
import type { AuditEventInput } from "../../src/domain/ports.js";
import { verifyAuditChain } from "../../src/storage/audit-chain.js";
import { auditEventHash, GENESIS_HASH, type AuditEventRow } from "../../src/storage/audit-hash.js";
import { AUDIT_APPEND_LOCK_KEY, AUDIT_WRITE_FAILED_MESSAGE, createPostgresAuditLog } from "../../src/storage/audit-log.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { captureLogger } from "../support/log-capture.js";
import { awaitedLater } from "../support/wait-until.js";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});
beforeEach(async () => {
  await db.sql`truncate audit_events, audit_anchor`;
});

function event(index: number, replica: string): AuditEventInput {
  return {
    action: "token.issued",
    outcome: "success",
    caller: `svc-${replica}`,
    callerKind: "service",
    userId: `u-${index % 7}`,
    integrationId: `i-${index}`,
    provider: "google",
    requestId: `${replica}-${index}`,
    peer: "127.0.0.1:1234",
    scopes: ["openid", "email"],
    details: { replica },
  };
}

async function rows(): Promise<AuditEventRow[]> {
  return db.sql<AuditEventRow[]>`
    select sequence::text as sequence, time, action, outcome, reason, caller, caller_kind, user_id, integration_id,
           provider, request_id, peer, scopes, details, previous_hash, hash
      from audit_events order by audit_events.sequence`;
}

/**
 * A writer on its own pool, and another session that can hold the append lock against it (as a
 * stuck replica would): everything is closed again afterwards, whatever the test did.
 */
async function withAppendLockHolder(
  options: { poolSize: number; lockTimeoutMs: number },
  body: (fixture: {
    pool: postgres.Sql;
    log: ReturnType<typeof createPostgresAuditLog>;
    takeLock: () => Promise<void>;
    releaseLock: () => Promise<void>;
  }) => Promise<void>,
): Promise<void> {
  const pool = postgres(db.url, { max: options.poolSize, onnotice: () => {} });
  const holder = await db.sql.reserve();
  const { logger } = captureLogger();
  const log = createPostgresAuditLog({ sql: pool, logger, lockTimeoutMs: options.lockTimeoutMs });
  let holding = false;
  const releaseLock = async () => {
    if (holding) await holder`rollback`;
    holding = false;
  };
  try {
    await body({
      pool,
      log,
      takeLock: async () => {
        await holder`begin`;
        holding = true;
        await holder`select pg_advisory_xact_lock(${AUDIT_APPEND_LOCK_KEY}::bigint)`;
      },
      releaseLock,
    });
  } finally {
    await releaseLock().catch(() => undefined);
    holder.release();
    await log.close();
    await pool.end({ timeout: 5 });
  }
}

describe("createPostgresAuditLog", () => {
  it("writes a row whose hash chains from genesis, with every field and the clock's time", async () => {
    const time = new Date("2024-03-01T10:00:00.123Z");
    const { logger } = captureLogger();
    const log = createPostgresAuditLog({ sql: db.sql, logger, clock: { now: () => time } });
    await log.record({
      action: "integration.deleted",
      outcome: "denied",
      reason: "PERMISSION_DENIED",
      caller: "alice",
      callerKind: "user",
      userId: "alice",
      integrationId: "i-9",
      provider: "notion",
      requestId: "r-1",
      peer: "10.0.0.1:443",
      scopes: ["write", "read"],
      details: { via: "connect" },
    });
    const [row] = await rows();
    expect(row).toMatchObject({
      sequence: "1",
      action: "integration.deleted",
      outcome: "denied",
      reason: "PERMISSION_DENIED",
      caller: "alice",
      caller_kind: "user",
      user_id: "alice",
      integration_id: "i-9",
      provider: "notion",
      request_id: "r-1",
      peer: "10.0.0.1:443",
      scopes: ["read", "write"],
      details: { via: "connect" },
      previous_hash: GENESIS_HASH,
    });
    expect(row?.time.toISOString()).toBe(time.toISOString());
    expect(row?.hash).toBe(auditEventHash(GENESIS_HASH, row!));
    await log.close();
  });

  it("stores exactly the values it hashed, whatever characters they hold", async () => {
    const { logger } = captureLogger();
    const log = createPostgresAuditLog({ sql: db.sql, logger });
    const awkward = 'quote " backslash \\ slash / tab \t newline \n émoji 🔑 bell \u0007';
    await Promise.all([
      log.record({
        action: "token.issued",
        outcome: "success",
        caller: awkward,
        callerKind: "service",
        userId: "nul\u0000inside",
        integrationId: "lone \uD800 surrogate",
        provider: "google",
        requestId: "",
        peer: "[::1]:50051",
        scopes: ["z", "a b", "\u00e9"],
        details: { "10": "ten", "2": "two", b: awkward, a: "" },
      }),
      log.record({ action: "token.issued", outcome: "success" }),
    ]);
    const stored = await rows();
    expect(stored).toHaveLength(2);
    expect(stored[0]).toMatchObject({
      caller: awkward,
      user_id: "nul\uFFFDinside",
      integration_id: "lone \uFFFD surrogate",
      request_id: "",
      scopes: ["a b", "z", "\u00e9"],
      details: { "10": "ten", "2": "two", b: awkward, a: "" },
    });
    expect(stored[1]).toMatchObject({ caller: "", scopes: [], details: {}, previous_hash: stored[0]?.hash });
    for (const row of stored) expect(row.hash).toBe(auditEventHash(row.previous_hash, row));
    expect(await verifyAuditChain(db.sql)).toEqual({ intact: true, checked: 2, lastSequence: 2 });
    await log.close();
  });

  it("keeps the sequence gap-free and the chain intact with two replicas writing concurrently", async () => {
    const { logger } = captureLogger();
    const otherPool = postgres(db.url, { max: 4, onnotice: () => {} });
    const replicaA = createPostgresAuditLog({ sql: db.sql, logger, maxBatchSize: 16 });
    const replicaB = createPostgresAuditLog({ sql: otherPool, logger, maxBatchSize: 16 });
    try {
      // Both pools connected first: a replica still opening its connection would let the other
      // append all of its events alone.
      await Promise.all([db.sql`select 1`, otherPool`select 1`]);
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 150; i += 1) {
        writes.push(awaitedLater(replicaA.record(event(i, "a"))), awaitedLater(replicaB.record(event(i, "b"))));
        // Spread the calls over several ticks so batches of both replicas interleave.
        if (i % 20 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      await Promise.all(writes);
      const stored = await rows();
      expect(stored.map((row) => Number(row.sequence))).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
      expect(new Set(stored.map((row) => row.request_id)).size).toBe(300);
      // Both replicas appended while the other was appending, not one after the other.
      const switches = stored.filter((row, i) => i > 0 && row.details["replica"] !== stored[i - 1]?.details["replica"]).length;
      expect(switches).toBeGreaterThan(2);
      expect(await verifyAuditChain(db.sql, { batchSize: 64 })).toEqual({ intact: true, checked: 300, lastSequence: 300 });
    } finally {
      await replicaA.close();
      await replicaB.close();
      await otherPool.end({ timeout: 5 });
    }
  });

  it("chains after the true tip when another replica appended since this writer's last batch", async () => {
    const { logger } = captureLogger();
    const replicaA = createPostgresAuditLog({ sql: db.sql, logger });
    const replicaB = createPostgresAuditLog({ sql: db.sql, logger });
    try {
      await replicaA.record(event(1, "a"));
      await replicaB.record(event(2, "b"));
      // A last saw the chain end at its own event 1: its next batch must follow B's instead.
      await replicaA.record(event(3, "a"));
      await replicaA.record(event(4, "a"));
      expect((await rows()).map((row) => [row.sequence, row.request_id])).toEqual([
        ["1", "a-1"],
        ["2", "b-2"],
        ["3", "a-3"],
        ["4", "a-4"],
      ]);
      expect((await verifyAuditChain(db.sql)).intact).toBe(true);
    } finally {
      await replicaA.close();
      await replicaB.close();
    }
  });

  it("groups concurrent records: one transaction per batch", async () => {
    const { logger } = captureLogger();
    const pool = postgres(db.url, { max: 2, onnotice: () => {} });
    // The writer reserves one connection per batch and runs the batch's transaction on it.
    let transactions = 0;
    const reserve = pool.reserve.bind(pool) as (...args: unknown[]) => Promise<unknown>;
    (pool as unknown as { reserve: (...args: unknown[]) => Promise<unknown> }).reserve = (...args) => {
      transactions += 1;
      return reserve(...args);
    };
    const log = createPostgresAuditLog({ sql: pool, logger, maxBatchSize: 256, maxDelayMs: 50 });
    try {
      await Promise.all(Array.from({ length: 300 }, (_, i) => log.record(event(i, "a"))));
      // 256 fill the first batch at once; the other 44 wait for it and go in the second.
      expect(transactions).toBe(2);
      const started = performance.now();
      await log.record(event(300, "a"));
      expect(transactions).toBe(3);
      // A lone event waits for company at most maxDelayMs.
      expect(performance.now() - started).toBeGreaterThanOrEqual(45);
      expect((await rows()).length).toBe(301);
    } finally {
      await log.close();
      await pool.end({ timeout: 5 });
    }
  });

  it("rejects every record of a batch that cannot be written, calls onWriteFailure, and consumes no sequence", async () => {
    const { logger, log: captured } = captureLogger();
    const failures: number[] = [];
    const log = createPostgresAuditLog({ sql: db.sql, logger, onWriteFailure: (n) => failures.push(n) });
    await log.record(event(0, "a"));
    await db.sql`alter table audit_events add constraint audit_test_no_boom check (action <> 'boom')`;
    try {
      const batch = [log.record(event(1, "a")), log.record({ action: "boom", outcome: "failure" }), log.record(event(2, "a"))];
      const results = await Promise.allSettled(batch);
      for (const result of results) {
        expect(result.status).toBe("rejected");
        const reason = (result as PromiseRejectedResult).reason as unknown;
        expect(reason).toBeInstanceOf(BrokerError);
        expect((reason as BrokerError).code).toBe("internal");
        expect((reason as BrokerError).message).toBe(AUDIT_WRITE_FAILED_MESSAGE);
      }
      expect(failures).toEqual([3]);
      expect(captured.lines.some((line) => line["msg"] === "audit events could not be written; their operations fail")).toBe(true);
    } finally {
      await db.sql`alter table audit_events drop constraint audit_test_no_boom`;
    }
    await log.record(event(3, "a"));
    const stored = await rows();
    expect(stored.map((row) => [row.sequence, row.request_id])).toEqual([
      ["1", "a-0"],
      ["2", "a-3"],
    ]);
    expect((await verifyAuditChain(db.sql)).intact).toBe(true);
    await log.close();
  });

  it("fails the operation when the database refuses the insert (permission revoked)", async () => {
    const role = `audit_writer_${Date.now()}`;
    await db.sql.unsafe(`create role ${role} login`);
    await db.sql.unsafe(`grant select on audit_events, audit_anchor to ${role}`);
    const url = new URL(db.url);
    url.username = role;
    const pool = postgres(url.toString(), { max: 1, onnotice: () => {} });
    const { logger } = captureLogger();
    const log = createPostgresAuditLog({ sql: pool, logger });
    try {
      await expect(log.record(event(1, "a"))).rejects.toMatchObject({ code: "internal", message: AUDIT_WRITE_FAILED_MESSAGE });
      expect((await rows()).length).toBe(0);
    } finally {
      await log.close();
      await pool.end({ timeout: 5 });
      await db.sql.unsafe(`drop owned by ${role}`);
      await db.sql.unsafe(`drop role ${role}`);
    }
  });

  it("fails a batch that cannot take the append lock in time and leaves its connection outside any transaction", async () => {
    await withAppendLockHolder({ poolSize: 1, lockTimeoutMs: 100 }, async ({ pool, log, takeLock, releaseLock }) => {
      await takeLock();
      await expect(log.record(event(1, "a"))).rejects.toMatchObject({ code: "internal", message: AUDIT_WRITE_FAILED_MESSAGE });
      // The pool's only connection: in the failed transaction this would be refused, and the
      // batch's transaction-local lock_timeout would still be set.
      const [setting] = await pool<{ timeout: string }[]>`select current_setting('lock_timeout') as timeout`;
      expect(setting?.timeout).toBe("0");
      await releaseLock();
      await log.record(event(2, "a"));
      expect((await rows()).map((row) => [row.sequence, row.request_id])).toEqual([["1", "a-2"]]);
    });
  });

  it("fails a one-round-trip batch that cannot take the append lock, and the next batch still chains right", async () => {
    await withAppendLockHolder({ poolSize: 1, lockTimeoutMs: 100 }, async ({ pool, log, takeLock, releaseLock }) => {
      // The writer now knows the tip, so its next batch goes out as one transaction at once.
      await log.record(event(1, "a"));
      await takeLock();
      await expect(log.record(event(2, "a"))).rejects.toMatchObject({ code: "internal", message: AUDIT_WRITE_FAILED_MESSAGE });
      const [setting] = await pool<{ timeout: string }[]>`select current_setting('lock_timeout') as timeout`;
      expect(setting?.timeout).toBe("0");
      await releaseLock();
      await log.record(event(3, "a"));
      expect((await rows()).map((row) => [row.sequence, row.request_id])).toEqual([
        ["1", "a-1"],
        ["2", "a-3"],
      ]);
      expect((await verifyAuditChain(db.sql)).intact).toBe(true);
    });
  });

  it("fails the batch whose backend dies mid-transaction, then writes the next one", async () => {
    await withAppendLockHolder({ poolSize: 2, lockTimeoutMs: 30_000 }, async ({ log, takeLock, releaseLock }) => {
      await log.record(event(1, "a"));
      await takeLock();
      // Its rejection may arrive while the test still awaits the termination below.
      const pending = awaitedLater(log.record(event(2, "a")));
      const waiting = async () =>
        (await db.sql<{ pid: number }[]>`select pid from pg_locks where locktype = 'advisory' and not granted`)[0]?.pid;
      await expect.poll(waiting, { timeout: 5_000 }).toBeDefined();
      await db.sql`select pg_terminate_backend(${(await waiting())!})`;
      // A dead backend is an outage: UNAVAILABLE with a retry delay, never INTERNAL.
      await expect(pending).rejects.toMatchObject({ code: "database_unavailable", message: `${AUDIT_WRITE_FAILED_MESSAGE}: the database is unavailable; retry later` });
      await expect(pending).rejects.toHaveProperty("retryAfterMs", 1_000);
      await releaseLock();
      await log.record(event(3, "a"));
      expect((await rows()).map((row) => [row.sequence, row.request_id])).toEqual([
        ["1", "a-1"],
        ["2", "a-3"],
      ]);
    });
  });

  it("refuses an event with fields beyond AuditEventInput without touching its batch", async () => {
    const { logger } = captureLogger();
    const log = createPostgresAuditLog({ sql: db.sql, logger });
    const bad = log.record({ ...event(1, "a"), accessToken: "secret-value" } as AuditEventInput);
    const good = log.record(event(2, "a"));
    await expect(bad).rejects.toMatchObject({ code: "internal" });
    await expect(good).resolves.toBeUndefined();
    expect((await rows()).map((row) => row.request_id)).toEqual(["a-2"]);
    await log.close();
    await expect(log.record(event(3, "a"))).rejects.toMatchObject({ code: "internal" });
  });
});
