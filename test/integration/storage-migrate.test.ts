/** Migrations against real PostgreSQL: concurrent runners, idempotence, checksums, rollback. */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBrokerError } from "../../src/domain/errors.js";
import { latestMigrationVersion, loadMigrations, migrationStatus, runMigrations } from "../../src/storage/migrate.js";
import { createTestDatabase } from "../support/database.js";
import { awaitedLater, waitUntil } from "../support/wait-until.js";

const SHIPPED = fileURLToPath(new URL("../../src/storage/migrations/", import.meta.url));
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "oauth-broker-migrations-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A migrations directory: the shipped 0001 plus the given extra files. */
async function directory(name: string, extra: Record<string, string>): Promise<string> {
  const dir = join(scratch, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
  await copyFile(join(SHIPPED, "0001_initial.sql"), join(dir, "0001_initial.sql"));
  for (const [file, content] of Object.entries(extra)) await writeFile(join(dir, file), content);
  return dir;
}


/** An advisory lock the test holds to keep a migration waiting (any id the migrations do not use). */
const GATE_LOCK_ID = 4242;
describe("runMigrations", () => {
  it("applies the shipped migrations once and is idempotent", async () => {
    const db = await createTestDatabase({ migrate: false });
    try {
      expect(await migrationStatus(db.sql)).toEqual({ applied: 0, latest: latestMigrationVersion() });
      const first = await runMigrations(db.sql);
      expect(first.applied).toEqual(loadMigrations().map((m) => m.version));
      expect(first.current).toBe(latestMigrationVersion());
      const again = await runMigrations(db.sql);
      expect(again).toEqual({ applied: [], current: latestMigrationVersion() });
      expect(await migrationStatus(db.sql)).toEqual({ applied: latestMigrationVersion(), latest: latestMigrationVersion() });
      const rows = await db.sql<{ version: number; name: string }[]>`select version, name from schema_migrations order by version`;
      expect(rows.map((r) => ({ ...r }))).toEqual([
        { version: 1, name: "0001_initial.sql" },
        { version: 2, name: "0002_change_feed_revocations_sync.sql" },
        { version: 3, name: "0003_refresh_lease_sent.sql" },
      ]);
    } finally {
      await db.drop();
    }
  });

  it("lets two replicas start at once on a fresh database: both succeed, each version applied once", async () => {
    // 0002 waits for a lock the test holds until one runner is inside it and the other queued
    // behind the migration lock, so the two really overlap however the machine schedules them;
    // without the migration lock the second would fail on "relation already exists" (or a
    // duplicate schema_migrations row).
    const dir = await directory("concurrent", {
      "0002_slow.sql": `select pg_advisory_xact_lock(${GATE_LOCK_ID});\ncreate table slow_marker (id int primary key);\ninsert into slow_marker values (1);\n`,
    });
    const db = await createTestDatabase({ migrate: false });
    const other = postgres(db.url, { max: 2, onnotice: () => {} });
    const gate = await db.sql.reserve();
    try {
      await gate`select pg_advisory_lock(${GATE_LOCK_ID})`;
      const both = awaitedLater(Promise.all([runMigrations(db.sql, { directory: dir }), runMigrations(other, { directory: dir })]));
      await waitUntil(
        async () =>
          (await db.sql`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and wait_event = 'advisory'`).length === 2,
        "one runner waits inside 0002, the other for the migration lock",
      );
      await gate`select pg_advisory_unlock(${GATE_LOCK_ID})`;
      const [a, b] = await both;
      expect([...a.applied, ...b.applied].sort()).toEqual([1, 2]);
      expect(a.current).toBe(2);
      expect(b.current).toBe(2);
      const rows = await db.sql<{ version: number }[]>`select version from schema_migrations order by version`;
      expect(rows.map((r) => r.version)).toEqual([1, 2]);
      expect((await db.sql`select id from slow_marker`).count).toBe(1);
    } finally {
      gate.release();
      await other.end();
      await db.drop();
    }
  });

  it("refuses to run when an applied migration file was changed, naming the file", async () => {
    const original = await directory("tamper-before", { "0002_extra.sql": "create table extra (id int);\n" });
    const changed = await directory("tamper-after", { "0002_extra.sql": "create table extra (id bigint);\n" });
    const db = await createTestDatabase({ migrate: false });
    try {
      await runMigrations(db.sql, { directory: original });
      const failure = await runMigrations(db.sql, { directory: changed }).catch((e: unknown) => e);
      expect(isBrokerError(failure, "failed_precondition")).toBe(true);
      expect((failure as Error).message).toMatch(/0002_extra\.sql was changed after it was applied/);
    } finally {
      await db.drop();
    }
  });

  it("treats a checkout with CRLF line endings as the same migration", async () => {
    const crlf = (await readFile(join(SHIPPED, "0001_initial.sql"), "utf8")).replace(/\n/g, "\r\n");
    const dir = join(scratch, "crlf");
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    await writeFile(join(dir, "0001_initial.sql"), crlf);
    const db = await createTestDatabase();
    try {
      expect(await runMigrations(db.sql, { directory: dir })).toEqual({ applied: [], current: latestMigrationVersion() });
    } finally {
      await db.drop();
    }
  });

  it("rolls a failing migration back entirely and names it", async () => {
    const dir = await directory("failing", {
      "0002_broken.sql": "create table half_done (id int);\nselect * from no_such_table;\n",
    });
    const db = await createTestDatabase({ migrate: false });
    try {
      const failure = await runMigrations(db.sql, { directory: dir }).catch((e: unknown) => e);
      expect(isBrokerError(failure, "internal")).toBe(true);
      expect((failure as Error).message).toMatch(/0002_broken\.sql failed and was rolled back: .*no_such_table/);
      const rows = await db.sql<{ version: number }[]>`select version from schema_migrations order by version`;
      expect(rows.map((r) => r.version)).toEqual([1]);
      const [table] = await db.sql<{ t: string | null }[]>`select to_regclass('half_done')::text as t`;
      expect(table?.t).toBeNull();
    } finally {
      await db.drop();
    }
  });
});
