/**
 * Retention deletes old audit events in batches and moves the anchor with them, so the remaining
 * chain — and the chain appended afterwards — still verifies.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { purgeAuditEvents, startAuditRetentionJob } from "../../src/jobs/audit-retention.js";
import { createAuditRetentionStore } from "../../src/storage/audit-retention-store.js";
import { createAuditChainMonitor } from "../../src/storage/audit-chain-monitor.js";
import { verifyAuditChain } from "../../src/storage/audit-chain.js";
import { createPostgresAuditLog } from "../../src/storage/audit-log.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { captureLogger } from "../support/log-capture.js";
import { waitUntil } from "../support/wait-until.js";

const DAY = 86_400_000;
const T0 = Date.parse("2024-01-01T00:00:00.000Z");
const logger = captureLogger().logger;
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

/** Appends one event per entry of `days`, at T0 + that many days, in order. */
async function appendAt(days: readonly number[]): Promise<void> {
  let index = 0;
  const log = createPostgresAuditLog({ sql: db.sql, logger, maxDelayMs: 0, clock: { now: () => new Date(T0 + (days[index] ?? 0) * DAY) } });
  for (index = 0; index < days.length; index += 1) {
    await log.record({ action: "token.refreshed", outcome: "success", requestId: `r-${index}` });
  }
  await log.close();
}

async function anchor(): Promise<{ sequence: string; hash: string } | undefined> {
  const [row] = await db.sql<{ sequence: string; hash: string }[]>`select sequence::text as sequence, hash from audit_anchor`;
  return row;
}

async function hashOf(sequence: number): Promise<string | undefined> {
  const [row] = await db.sql<{ hash: string }[]>`select hash from audit_events where sequence = ${sequence}`;
  return row?.hash;
}

async function sequences(): Promise<number[]> {
  const list = await db.sql<{ sequence: string }[]>`select sequence::text as sequence from audit_events order by audit_events.sequence`;
  return list.map((row) => Number(row.sequence));
}

describe("purgeAuditEvents", () => {
  it("deletes the old prefix in batches and anchors the rest", async () => {
    await appendAt([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const fifth = await hashOf(5);
    const result = await purgeAuditEvents({ store: createAuditRetentionStore(db.sql), olderThan: new Date(T0 + 5 * DAY), batchSize: 2, logger });
    expect(result).toEqual({ deleted: 5, anchor: { sequence: 5, hash: fifth } });
    expect(await sequences()).toEqual([6, 7, 8, 9, 10]);
    expect(await anchor()).toEqual({ sequence: "5", hash: fifth });
    expect(await verifyAuditChain(db.sql, { batchSize: 2 })).toEqual({ intact: true, checked: 5, lastSequence: 10 });
    // Nothing more is due: a second run changes nothing.
    expect(await purgeAuditEvents({ store: createAuditRetentionStore(db.sql), olderThan: new Date(T0 + 5 * DAY), batchSize: 2, logger })).toEqual({ deleted: 0 });
  });

  it("keeps the chain verifiable when everything was purged and new events follow the anchor", async () => {
    await appendAt([0, 1, 2]);
    const third = await hashOf(3);
    expect(await purgeAuditEvents({ store: createAuditRetentionStore(db.sql), olderThan: new Date(T0 + 30 * DAY), logger })).toMatchObject({ deleted: 3 });
    expect(await sequences()).toEqual([]);
    expect(await verifyAuditChain(db.sql)).toEqual({ intact: true, checked: 0, lastSequence: 3 });
    await appendAt([40, 41]);
    expect(await sequences()).toEqual([4, 5]);
    const [fourth] = await db.sql<{ previous_hash: string }[]>`select previous_hash from audit_events where sequence = 4`;
    expect(fourth?.previous_hash).toBe(third);
    expect(await verifyAuditChain(db.sql)).toEqual({ intact: true, checked: 2, lastSequence: 5 });
  });

  it("deletes only a prefix: an old event after a newer one waits", async () => {
    await appendAt([0, 1, 20, 2, 3]);
    expect(await purgeAuditEvents({ store: createAuditRetentionStore(db.sql), olderThan: new Date(T0 + 10 * DAY), logger })).toMatchObject({ deleted: 2 });
    expect(await sequences()).toEqual([3, 4, 5]);
    expect((await verifyAuditChain(db.sql)).intact).toBe(true);
  });

  it("refuses to delete a batch that does not verify, so the evidence stays", async () => {
    await appendAt([0, 1, 2, 3]);
    await db.sql`update audit_events set request_id = 'edited' where sequence = 2`;
    const result = await purgeAuditEvents({ store: createAuditRetentionStore(db.sql), olderThan: new Date(T0 + 10 * DAY), logger });
    expect(result).toMatchObject({ deleted: 0, problem: expect.stringContaining("event 2") });
    expect(await sequences()).toEqual([1, 2, 3, 4]);
    expect(await anchor()).toBeUndefined();
    expect(await verifyAuditChain(db.sql)).toMatchObject({ intact: false, firstBadSequence: 2 });
  });

  it("keeps the chain intact while replicas append concurrently, and the monitor agrees", async () => {
    await appendAt([0, 0, 0, 0, 0, 0, 0, 0]);
    const monitor = createAuditChainMonitor({ sql: db.sql, intervalMs: 60_000, logger });
    await monitor.start();
    const log = createPostgresAuditLog({ sql: db.sql, logger, clock: { now: () => new Date(T0 + 50 * DAY) } });
    try {
      const writes = Array.from({ length: 100 }, (_, i) => log.record({ action: "token.issued", outcome: "success", requestId: `n-${i}` }));
      const purge = purgeAuditEvents({ store: createAuditRetentionStore(db.sql), olderThan: new Date(T0 + DAY), batchSize: 3, logger });
      await Promise.all([...writes, purge]);
      expect(await purge).toMatchObject({ deleted: 8 });
      expect(await verifyAuditChain(db.sql)).toEqual({ intact: true, checked: 100, lastSequence: 108 });
      // The monitor's remembered tip (8) was purged: it re-walks from the anchor instead of crying wolf.
      expect(await monitor.check()).toEqual({ intact: true, checked: 100, lastSequence: 108 });
    } finally {
      await log.close();
      await monitor.stop();
    }
  });
});

describe("startAuditRetentionJob", () => {
  it("purges events older than the retention period at start and stops cleanly", async () => {
    await appendAt([0, 1, 2, 3]);
    const job = startAuditRetentionJob({
      store: createAuditRetentionStore(db.sql),
      retentionDays: 2,
      intervalMs: 60_000,
      logger,
      clock: { now: () => new Date(T0 + 3 * DAY + 1) },
    });
    try {
      await waitUntil(async () => (await sequences()).length < 4, "the job's first pass deletes");
      // Older than day 1 (exclusive): days 0 and 1 go.
      expect(await sequences()).toEqual([3, 4]);
      expect(await job.runOnce()).toEqual({ deleted: 0 });
    } finally {
      await job.stop();
    }
  });

  it("keeps everything when retentionDays is 0", async () => {
    await appendAt([0]);
    const job = startAuditRetentionJob({ store: createAuditRetentionStore(db.sql), retentionDays: 0, intervalMs: 10, logger });
    expect(await job.runOnce()).toEqual({ deleted: 0 });
    await job.stop();
    expect(await sequences()).toEqual([1]);
  });
});
