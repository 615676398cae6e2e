/**
 * The embedded default as a newcomer meets it: `npm start` in a fresh clone, as root under a
 * private home, and a first start that fails while the cluster is created.
 */
import { spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { rootServerHome } from "../../src/storage/embedded-postgres-layout.js";
import { runToExit, startBrokerProcess } from "../support/broker-process.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const asRoot = process.getuid?.() === 0;
const cleanup: string[] = [];

afterEach(async () => {
  for (const path of cleanup.splice(0)) await rm(path, { recursive: true, force: true });
});

/** Every file and directory under `directory`, with its mode. */
async function walk(directory: string): Promise<Array<{ path: string; mode: number }>> {
  const found: Array<{ path: string; mode: number }> = [];
  for (const entry of await readdir(directory, { withFileTypes: true }).catch(() => [])) {
    const path = join(directory, entry.name);
    found.push({ path, mode: (await stat(path)).mode & 0o777 });
    if (entry.isDirectory()) found.push(...(await walk(path)));
  }
  return found;
}

async function passwordFilesInTmp(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((name) => name.startsWith("pg-password-"));
}

describe("the embedded PostgreSQL under npm start", () => {
  it("a first start whose initdb fails leaves no password file anywhere and nothing readable by others", async () => {
    const workspace = await mkdtemp(join(tmpdir(), "oauth-broker-initdb-"));
    cleanup.push(workspace);
    const dataDir = join(workspace, "data");
    const serverHome = rootServerHome(join(dataDir, "postgres"));
    if (asRoot) cleanup.push(serverHome);
    const before = await passwordFilesInTmp();
    // A file-size limit below one WAL segment (16 MB), as a full quota would: initdb fails
    // writing its first WAL file, after the password file was handed to it.
    const child = spawn("sh", ["-c", 'ulimit -f 8192 && exec "$0" --import tsx src/main.ts', process.execPath], {
      cwd: ROOT,
      env: { PATH: process.env["PATH"] ?? "", HOME: workspace, BROKER_DATA_DIR: dataDir, BROKER_GRPC_ADDR: "127.0.0.1:0", BROKER_HTTP_ADDR: "127.0.0.1:0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const { code, output } = await runToExit(child, 60_000);
    expect(code, output).toBe(1);
    expect(output).toContain("oauth-broker: could not create the embedded PostgreSQL cluster");
    expect(output).not.toMatch(/\n\s+at /);

    expect(await passwordFilesInTmp()).toEqual(before);
    // The binaries linked into the server's home are npm's public files; everything else is the broker's.
    const left = [...(await walk(dataDir)), ...(asRoot ? await walk(serverHome) : [])].filter((entry) => !/\/bin-[0-9a-f]+(\/|$)/.test(entry.path));
    expect(left.filter((entry) => /password/.test(entry.path))).toEqual([]);
    const readable = left.filter((entry) => (entry.mode & 0o004) !== 0);
    expect(readable).toEqual([]);
  }, 90_000);

  it.runIf(asRoot)("as root, starts and stops in a clone under a home of mode 0700 without opening it up", async () => {
    const home = await mkdtemp(join(tmpdir(), "oauth-broker-roothome-"));
    cleanup.push(home);
    await chmod(home, 0o700);
    const clone = join(home, "clone");
    await mkdir(clone, { mode: 0o755 });
    const dataDir = join(clone, ".broker-data");
    cleanup.push(rootServerHome(join(dataDir, "postgres")));
    const modes = async () => Promise.all([home, clone].map(async (path) => (await stat(path)).mode));
    const modesBefore = await modes();

    const broker = await startBrokerProcess({ BROKER_DATA_DIR: dataDir, HOME: home });
    try {
      const ready = await fetch(`${broker.httpUrl}/readyz`);
      expect(ready.status).toBe(200);
    } finally {
      expect(await broker.stop("SIGTERM")).toBe(0);
    }
    expect(broker.output()).not.toMatch(/"level":(50|60)/);
    expect(await modes()).toEqual(modesBefore);
    expect((await stat(dataDir)).mode & 0o077).toBe(0);
  }, 90_000);
});
