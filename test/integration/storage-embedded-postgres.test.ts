/** The embedded default: a real PostgreSQL in a data directory, kept across restarts. */
import { chmod, mkdtemp, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { isBrokerError } from "../../src/domain/errors.js";
import { startEmbeddedPostgres } from "../../src/storage/embedded-postgres.js";

function deadPid(): number {
  for (let pid = 4_000_000; ; pid--) {
    try {
      process.kill(pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ESRCH") return pid;
    }
  }
}

const asRoot = process.getuid?.() === 0;

describe("startEmbeddedPostgres", () => {
  it("starts on a free port, keeps data across a restart after an unclean stop, and stops", async () => {
    const parent = await mkdtemp(join(tmpdir(), "oauth-broker-embedded-"));
    const dataDir = join(parent, "postgres");
    if (asRoot) await chmod(parent, 0o755);
    // As root the server runs as `postgres` in a home of its own (here inside the test's directory).
    const serverHome = asRoot ? join(parent, "server-home") : undefined;
    const clusterDir = join(serverHome ?? dataDir, "pg");
    const parentMode = (await stat(parent)).mode;
    const tmpMode = (await stat(tmpdir())).mode;
    try {
      const first = await startEmbeddedPostgres({ dataDir, port: 0, serverHome });
      expect(new URL(first.url).pathname).toBe("/broker");
      expect(first.port).toBeGreaterThan(0);
      const sql = postgres(first.url, { max: 1, onnotice: () => {} });
      await sql`create table kept (value text)`;
      await sql`insert into kept values ('survives')`;
      await sql.end();
      await first.stop();
      await first.stop(); // idempotent

      // The server is gone: nothing answers on its port any more.
      const gone = postgres(first.url, { max: 1, connect_timeout: 2, onnotice: () => {} });
      await expect(gone`select 1`).rejects.toMatchObject({ code: "ECONNREFUSED" });
      await gone.end();

      // What a crash leaves behind: a postmaster.pid naming a process that no longer exists.
      await writeFile(join(clusterDir, "postmaster.pid"), `${deadPid()}\n${clusterDir}\n`);
      const second = await startEmbeddedPostgres({ dataDir, serverHome });
      try {
        const again = postgres(second.url, { max: 1, onnotice: () => {} });
        expect((await again<{ value: string }[]>`select value from kept`).map((r) => r.value)).toEqual(["survives"]);
        await again.end();
        // A second server on the same directory is refused instead of corrupting it.
        const twice = await startEmbeddedPostgres({ dataDir, serverHome }).catch((e: unknown) => e);
        expect(isBrokerError(twice, "database_unavailable")).toBe(true);
      } finally {
        await second.stop();
      }
      expect((await readdir(dataDir)).sort()).toEqual(asRoot ? ["password"] : ["password", "pg"]);
      // No directory the broker did not create changes mode for the server's user.
      expect((await stat(parent)).mode).toBe(parentMode);
      expect((await stat(tmpdir())).mode).toBe(tmpMode);
      expect((await stat(dataDir)).mode & 0o077).toBe(0);
      expect((await stat(join(dataDir, "password"))).mode & 0o077).toBe(0);
      if (serverHome) {
        const home = await stat(serverHome);
        expect([home.uid === process.getuid?.(), home.mode & 0o077]).toEqual([false, 0]);
      }
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  }, 60_000);

  it.runIf(asRoot)("as root, keeps serving a cluster an earlier release created in the data directory", async () => {
    const parent = await mkdtemp(join(tmpdir(), "oauth-broker-embedded-legacy-"));
    const dataDir = join(parent, "postgres");
    const serverHome = join(parent, "server-home");
    try {
      await chmod(parent, 0o755);
      const first = await startEmbeddedPostgres({ dataDir, serverHome });
      const sql = postgres(first.url, { max: 1, onnotice: () => {} });
      await sql`create table kept (value text)`;
      await sql`insert into kept values ('legacy')`;
      await sql.end();
      await first.stop();
      // The earlier layout: the cluster in the data directory, opened to the server's user.
      await rename(join(serverHome, "pg"), join(dataDir, "pg"));
      await chmod(dataDir, 0o701);

      const second = await startEmbeddedPostgres({ dataDir, serverHome });
      try {
        const again = postgres(second.url, { max: 1, onnotice: () => {} });
        expect((await again<{ value: string }[]>`select value from kept`).map((r) => r.value)).toEqual(["legacy"]);
        await again.end();
      } finally {
        await second.stop();
      }
      expect(await readdir(serverHome)).not.toContain("pg");
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  }, 60_000);
});
