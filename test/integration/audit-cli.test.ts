/**
 * `npm run audit:export` and `npm run audit:verify` as real processes against a test database:
 * valid JSON lines on stdout, the time window honoured, and the verdict in the exit status.
 */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditEventHash, GENESIS_HASH } from "../../src/storage/audit-hash.js";
import { exportAuditEvents, type AuditEventJson } from "../../src/storage/audit-export.js";
import { createPostgresAuditLog } from "../../src/storage/audit-log.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { captureLogger } from "../support/log-capture.js";

const T0 = Date.parse("2024-02-01T00:00:00.000Z");
const HOUR = 3_600_000;
let db: TestDatabase;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(script: string, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
      env: { PATH: process.env["PATH"] ?? "", DATABASE_URL: db.url, LOG_LEVEL: "warn", NODE_ENV: "test" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  db = await createTestDatabase();
  let index = 0;
  const log = createPostgresAuditLog({ sql: db.sql, logger: captureLogger().logger, maxDelayMs: 0, clock: { now: () => new Date(T0 + index * HOUR) } });
  for (index = 0; index < 5; index += 1) {
    await log.record({
      action: "token.issued",
      outcome: "success",
      userId: `u-${index}`,
      scopes: ["b", "a"],
      details: { note: `line "${index}"\nwith a newline` },
    });
  }
  await log.close();
});
afterAll(async () => {
  await db?.drop();
});

describe("audit CLIs", () => {
  it("exports every event as one JSON object per line, the chain re-checkable from the lines alone", async () => {
    const result = await run("src/cli/audit-export.ts", []);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.split("\n");
    expect(lines.pop()).toBe("");
    const events = lines.map((line) => JSON.parse(line) as AuditEventJson);
    expect(events.map((event) => event.sequence)).toEqual([1, 2, 3, 4, 5]);
    expect(events[2]).toMatchObject({ user_id: "u-2", time: new Date(T0 + 2 * HOUR).toISOString(), scopes: ["a", "b"], details: { note: 'line "2"\nwith a newline' } });
    let previous = GENESIS_HASH;
    for (const event of events) {
      expect(event.previous_hash).toBe(previous);
      expect(auditEventHash(previous, { ...event, sequence: String(event.sequence), time: new Date(event.time) })).toBe(event.hash);
      previous = event.hash;
    }
  });

  it("honours --since (inclusive) and --until (exclusive), and refuses a bad date", async () => {
    const window = await run("src/cli/audit-export.ts", ["--since", new Date(T0 + HOUR).toISOString(), "--until", new Date(T0 + 3 * HOUR).toISOString()]);
    expect(window.code, window.stderr).toBe(0);
    expect(window.stdout.trim().split("\n").map((line) => (JSON.parse(line) as AuditEventJson).sequence)).toEqual([2, 3]);
    const bad = await run("src/cli/audit-export.ts", ["--since", "yesterday"]);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toContain("--since");
  });

  it("streams page by page with backpressure, in chain order", async () => {
    const lines: string[] = [];
    const written = await exportAuditEvents({
      sql: db.sql,
      since: new Date(T0 + HOUR),
      batchSize: 2,
      writeLine: async (line) => {
        await new Promise((resolve) => setTimeout(resolve, 1));
        lines.push(line);
      },
    });
    expect(written).toBe(4);
    expect(lines.every((line) => line.endsWith("\n") && !line.slice(0, -1).includes("\n"))).toBe(true);
    expect(lines.map((line) => (JSON.parse(line) as AuditEventJson).sequence)).toEqual([2, 3, 4, 5]);
  });

  it("verifies: exit 0 when intact, 1 with the first bad sequence when tampered", async () => {
    const intact = await run("src/cli/audit-verify.ts", []);
    expect(intact.code, intact.stderr).toBe(0);
    expect(intact.stdout).toContain("audit chain intact: 5 events verified");
    await db.sql`update audit_events set user_id = 'mallory' where sequence = 4`;
    try {
      const broken = await run("src/cli/audit-verify.ts", []);
      expect(broken.code, broken.stderr).toBe(1);
      expect(broken.stdout).toContain("BROKEN at sequence 4");
    } finally {
      await db.sql`update audit_events set user_id = 'u-3' where sequence = 4`;
    }
  });
});
