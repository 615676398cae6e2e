/**
 * The local keyring file, `<dataDir>/keyring.json`: every key version ever made, as 32 random
 * bytes each. Versions are only ever appended (rotation) — losing one makes its ciphertexts
 * unreadable — so creation is atomic and no-clobber (write a temporary file, `link` it into
 * place) and rotation holds an exclusive lock file while it rewrites the file.
 * The file is created with mode 0600 and refused when group or others can read it.
 */
import { randomBytes } from "node:crypto";
import { link, mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { BrokerError } from "../domain/errors.js";
import { sleep } from "../domain/waiting.js";

export const KEYRING_FILE = "keyring.json";
const FORMAT = "oauth-broker-keyring/1";
const LOCK_STALE_MS = 30_000;
const LOCK_WAIT_MS = 5_000;

export interface Keyring {
  readonly latest: number;
  readonly keys: ReadonlyMap<number, Buffer>;
  /** mtime of the file this was read from, to notice rotations by other processes. */
  readonly mtimeMs: number;
}

interface KeyringJson {
  readonly format: string;
  readonly keys: ReadonlyArray<{ readonly version: number; readonly key: string; readonly createdAt: string }>;
}

function keyringError(message: string, path: string, cause?: unknown): BrokerError {
  return new BrokerError("key_service_error", message, { reason: "LOCAL_KEYRING_INVALID", metadata: { path }, cause });
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export function keyringPath(dataDir: string): string {
  return join(dataDir, KEYRING_FILE);
}

function parse(text: string, path: string, mtimeMs: number): Keyring {
  let json: KeyringJson;
  try {
    json = JSON.parse(text) as KeyringJson;
  } catch (error) {
    throw keyringError(`${path} is not valid JSON`, path, error);
  }
  if (json.format !== FORMAT || !Array.isArray(json.keys) || json.keys.length === 0) {
    throw keyringError(`${path} is not an oauth-broker keyring (${FORMAT})`, path);
  }
  const keys = new Map<number, Buffer>();
  for (const entry of json.keys) {
    const key = Buffer.from(String(entry.key), "base64");
    if (!Number.isInteger(entry.version) || entry.version < 1 || key.length !== 32 || keys.has(entry.version)) {
      throw keyringError(`${path} holds an invalid key entry (version ${String(entry.version)})`, path);
    }
    keys.set(entry.version, key);
  }
  return { latest: Math.max(...keys.keys()), keys, mtimeMs };
}

function serialise(keys: ReadonlyMap<number, Buffer>, createdAt: ReadonlyMap<number, string>): string {
  const entries = [...keys.entries()]
    .sort(([a], [b]) => a - b)
    .map(([version, key]) => ({ version, key: key.toString("base64"), createdAt: createdAt.get(version) ?? new Date().toISOString() }));
  return `${JSON.stringify({ format: FORMAT, keys: entries }, null, 2)}\n`;
}

/** Reads the keyring; refuses a file group or others can access. */
export async function readKeyring(path: string): Promise<Keyring> {
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) {
    throw keyringError(
      `${path} is accessible by group or others (mode ${(info.mode & 0o777).toString(8)}): run chmod 600 on it`,
      path,
    );
  }
  return parse(await readFile(path, "utf8"), path, info.mtimeMs);
}

async function createdAtOf(path: string): Promise<Map<number, string>> {
  const json = JSON.parse(await readFile(path, "utf8")) as KeyringJson;
  return new Map(json.keys.map((entry) => [entry.version, entry.createdAt]));
}

/** Writes `text` to a fresh temporary file next to `path` (mode 0600, fsynced) and returns its name. */
async function writeTemporary(path: string, text: string): Promise<string> {
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const handle = await open(temporary, "wx", 0o600);
  try {
    await handle.writeFile(text, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
  return temporary;
}

/** Opens the keyring in `dataDir`, creating it (one key version) when absent. */
export async function openKeyring(dataDir: string): Promise<{ keyring: Keyring; created: boolean }> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = keyringPath(dataDir);
  try {
    return { keyring: await readKeyring(path), created: false };
  } catch (error) {
    if (errorCode(error) !== "ENOENT") throw error;
  }
  const first = new Map([[1, randomBytes(32)]]);
  const temporary = await writeTemporary(path, serialise(first, new Map()));
  let created = true;
  try {
    await link(temporary, path); // fails if another process created it meanwhile: keep theirs
  } catch (error) {
    if (errorCode(error) !== "EEXIST") throw error;
    created = false;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
  return { keyring: await readKeyring(path), created };
}

async function withLock<T>(path: string, action: () => Promise<T>): Promise<T> {
  const lock = `${path}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const handle = await open(lock, "wx", 0o600);
      await handle.close();
      break;
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error;
      const info = await stat(lock).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > LOCK_STALE_MS) {
        await unlink(lock).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) {
        throw new BrokerError("key_service_unavailable", "the local keyring is locked by another rotation; retry later", {
          reason: "LOCAL_KEYRING_LOCKED",
          retryAfterMs: 1000,
          metadata: { path: lock },
        });
      }
      await sleep(50);
    }
  }
  try {
    return await action();
  } finally {
    await unlink(lock).catch(() => undefined);
  }
}

/** Appends a new key version (re-reading the file under the lock) and returns the new keyring. */
export async function addKeyVersion(dataDir: string): Promise<Keyring> {
  const path = keyringPath(dataDir);
  return withLock(path, async () => {
    const current = await readKeyring(path);
    const keys = new Map(current.keys);
    keys.set(current.latest + 1, randomBytes(32));
    const temporary = await writeTemporary(path, serialise(keys, await createdAtOf(path)));
    try {
      await rename(temporary, path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    return readKeyring(path);
  });
}
