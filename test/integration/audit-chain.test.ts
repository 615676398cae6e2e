/**
 * Tampering with stored audit events is detected: by the chain itself (edit, middle delete,
 * reorder) and by the monitor's memory where the chain alone cannot tell (deleted tail, a rewrite
 * with every hash recomputed).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createAuditChainMonitor } from "../../src/storage/audit-chain-monitor.js";
import { verifyAuditChain } from "../../src/storage/audit-chain.js";
import { auditEventHash, type AuditEventRow } from "../../src/storage/audit-hash.js";
import { createPostgresAuditLog } from "../../src/storage/audit-log.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { captureLogger } from "../support/log-capture.js";
import { waitUntil } from "../support/wait-until.js";

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

async function append(count: number): Promise<void> {
  const log = createPostgresAuditLog({ sql: db.sql, logger: captureLogger().logger, maxDelayMs: 0 });
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      log.record({ action: "token.issued", outcome: "success", userId: `u-${i}`, caller: "svc", scopes: ["s"], details: { n: String(i) } }),
    ),
  );
  await log.close();
}

async function rows(): Promise<AuditEventRow[]> {
  return db.sql<AuditEventRow[]>`
    select sequence::text as sequence, time, action, outcome, reason, caller, caller_kind, user_id, integration_id,
           provider, request_id, peer, scopes, details, previous_hash, hash
      from audit_events order by audit_events.sequence`;
}

/** What someone with write access and the algorithm would do to hide an edit: recompute every later hash. */
async function rewriteFrom(sequence: number, edit: (row: AuditEventRow) => AuditEventRow): Promise<void> {
  const all = await rows();
  let previous = all.find((row) => Number(row.sequence) === sequence - 1)?.hash ?? "0".repeat(64);
  for (const original of all.filter((row) => Number(row.sequence) >= sequence)) {
    const row = Number(original.sequence) === sequence ? edit(original) : original;
    const hash = auditEventHash(previous, row);
    await db.sql`update audit_events set user_id = ${row.user_id}, previous_hash = ${previous}, hash = ${hash}
                  where sequence = ${row.sequence}::bigint`;
    previous = hash;
  }
}

describe("verifyAuditChain", () => {
  it("verifies an empty trail and an untouched one, across batch boundaries", async () => {
    expect(await verifyAuditChain(db.sql)).toEqual({ intact: true, checked: 0, lastSequence: 0 });
    await append(25);
    expect(await verifyAuditChain(db.sql, { batchSize: 4 })).toEqual({ intact: true, checked: 25, lastSequence: 25 });
  });

  it("detects an edited field", async () => {
    await append(6);
    await db.sql`update audit_events set user_id = 'mallory' where sequence = 3`;
    expect(await verifyAuditChain(db.sql, { batchSize: 2 })).toMatchObject({
      intact: false,
      checked: 2,
      firstBadSequence: 3,
      problem: expect.stringContaining("modified"),
    });
  });

  it("detects an edited event whose own hash was recomputed, at the next link", async () => {
    await append(6);
    const third = (await rows())[2]!;
    const edited = { ...third, outcome: "failure" };
    await db.sql`update audit_events set outcome = 'failure', hash = ${auditEventHash(third.previous_hash, edited)} where sequence = 3`;
    expect(await verifyAuditChain(db.sql)).toMatchObject({ intact: false, firstBadSequence: 4, problem: expect.stringContaining("previous_hash") });
  });

  it("detects a deleted event in the middle", async () => {
    await append(6);
    await db.sql`delete from audit_events where sequence = 3`;
    expect(await verifyAuditChain(db.sql)).toMatchObject({ intact: false, firstBadSequence: 3, problem: expect.stringContaining("missing") });
  });

  it("detects a deleted event when the later ones were renumbered to close the gap", async () => {
    await append(6);
    await db.sql`delete from audit_events where sequence = 3`;
    await db.sql`update audit_events set sequence = sequence - 1 where sequence > 3`;
    expect(await verifyAuditChain(db.sql)).toMatchObject({ intact: false, firstBadSequence: 3 });
  });

  it("detects two events whose sequences were swapped", async () => {
    await append(6);
    await db.sql.begin(async (tx) => {
      await tx`update audit_events set sequence = -2 where sequence = 2`;
      await tx`update audit_events set sequence = 2 where sequence = 5`;
      await tx`update audit_events set sequence = 5 where sequence = -2`;
    });
    expect(await verifyAuditChain(db.sql)).toMatchObject({ intact: false, firstBadSequence: 2 });
  });

  it("cannot see a deleted tail by itself: what remains is a valid chain", async () => {
    await append(6);
    await db.sql`delete from audit_events where sequence >= 5`;
    expect(await verifyAuditChain(db.sql)).toEqual({ intact: true, checked: 4, lastSequence: 4 });
  });
});

describe("createAuditChainMonitor", () => {
  it("reports not intact before its first check, then verifies incrementally only what was appended", async () => {
    await append(10);
    const monitor = createAuditChainMonitor({ sql: db.sql, intervalMs: 60_000, logger: captureLogger().logger });
    expect(monitor.intact()).toBe(false);
    try {
      expect(await monitor.start()).toMatchObject({ intact: true, checked: 10 });
      expect(monitor.intact()).toBe(true);
      await append(3);
      expect(await monitor.check()).toEqual({ intact: true, checked: 3, lastSequence: 13 });
      expect(await monitor.check()).toEqual({ intact: true, checked: 0, lastSequence: 13 });
      // An edit behind the verified tip is the full verification's to find.
      await db.sql`update audit_events set caller = 'other' where sequence = 2`;
      expect((await monitor.check()).intact).toBe(true);
      expect(await monitor.check({ full: true })).toMatchObject({ intact: false, firstBadSequence: 2 });
      // Once broken it stays broken: later incremental checks walk everything again.
      await append(1);
      expect(await monitor.check()).toMatchObject({ intact: false, firstBadSequence: 2 });
      expect(monitor.intact()).toBe(false);
    } finally {
      await monitor.stop();
    }
  });

  it("detects a deleted tail by remembering the newest verified event", async () => {
    await append(6);
    const { logger, log } = captureLogger();
    const monitor = createAuditChainMonitor({ sql: db.sql, intervalMs: 60_000, logger });
    try {
      await monitor.start();
      await db.sql`delete from audit_events where sequence >= 5`;
      expect(await monitor.check()).toMatchObject({ intact: false, firstBadSequence: 5, problem: expect.stringContaining("5..6") });
      expect(await monitor.check({ full: true })).toMatchObject({ intact: false, firstBadSequence: 5 });
      expect(monitor.intact()).toBe(false);
      expect(log.lines.some((line) => line["level"] === 50 && String(line["msg"]).includes("audit chain is broken"))).toBe(true);
    } finally {
      await monitor.stop();
    }
  });

  it("detects a rewrite with every hash recomputed, which the chain alone accepts", async () => {
    await append(6);
    const monitor = createAuditChainMonitor({ sql: db.sql, intervalMs: 60_000, logger: captureLogger().logger });
    try {
      await monitor.start();
      await rewriteFrom(3, (row) => ({ ...row, user_id: "mallory" }));
      expect((await verifyAuditChain(db.sql)).intact).toBe(true);
      expect(await monitor.check()).toMatchObject({ intact: false, firstBadSequence: 6, problem: expect.stringContaining("rewritten") });
      expect(await monitor.check({ full: true })).toMatchObject({ intact: false, firstBadSequence: 6 });
    } finally {
      await monitor.stop();
    }
  });

  it("checks on its interval and reports each verdict", async () => {
    await append(2);
    const verdicts: boolean[] = [];
    const monitor = createAuditChainMonitor({
      sql: db.sql,
      intervalMs: 20,
      logger: captureLogger().logger,
      onVerdict: (verdict) => verdicts.push(verdict.intact),
    });
    try {
      await monitor.start();
      await db.sql`delete from audit_events where sequence = 2`;
      await waitUntil(() => !monitor.intact(), "the monitor finds the gap");
      expect(verdicts[0]).toBe(true);
      expect(verdicts.at(-1)).toBe(false);
    } finally {
      await monitor.stop();
    }
  });
});
