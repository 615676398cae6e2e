/**
 * The image's steps without a Docker engine (Dockerfile): `npm run build`, a production-only
 * dependency tree (the packages `npm ls --omit=dev` names, hard-linked: what `npm ci --omit=dev`
 * installs), then `node dist/main.js` with the image's environment from a directory holding no
 * `src/`. Checks readiness, one compiled command beside it, and a clean SIGTERM.
 */
import { execFile, spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { rootServerHome } from "../../src/storage/embedded-postgres-layout.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerfileRuntimeEnvironment } from "../support/image-environment.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);
let app: string;

/** What the Dockerfile sets (its memory settings too), with loopback port 0 instead of the fixed public ports. */
function imageEnvironment(): Record<string, string> {
  return {
    PATH: process.env["PATH"] ?? "",
    HOME: app,
    ...dockerfileRuntimeEnvironment(),
    BROKER_GRPC_ADDR: "127.0.0.1:0",
    BROKER_HTTP_ADDR: "127.0.0.1:0",
    BROKER_DATA_DIR: join(app, "broker-data"),
    // Documented next to `docker run`: without Vault, production needs this explicit consent.
    BROKER_ALLOW_LOCAL_KEYRING: "true",
  };
}

beforeAll(async () => {
  app = await mkdtemp(join(tmpdir(), "oauth-broker-image-"));
  await run("npm", ["run", "-s", "build"], { cwd: ROOT, timeout: 180_000 });
  const { stdout } = await run("npm", ["ls", "--omit=dev", "--all", "--parseable"], { cwd: ROOT });
  const packages = stdout
    .split("\n")
    .map((path) => relative(ROOT, path))
    // Top-level packages only; their nested node_modules come along with them.
    .filter((path) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path));
  for (const path of packages) {
    await mkdir(dirname(join(app, path)), { recursive: true });
    await run("cp", ["-al", join(ROOT, path), join(app, path)]);
  }
  await run("cp", ["-al", join(ROOT, "dist"), join(app, "dist")]);
  await cp(join(ROOT, "package.json"), join(app, "package.json"));
}, 240_000);

afterAll(async () => {
  // As root the embedded server's home is outside the data directory.
  await rm(rootServerHome(join(app, "broker-data", "postgres")), { recursive: true, force: true });
  await rm(app, { recursive: true, force: true });
});

describe("the image's steps", () => {
  it("serves from dist/ with production dependencies only, runs a compiled command beside it, and stops on SIGTERM", async () => {
    const broker = spawn(process.execPath, ["dist/main.js"], { cwd: app, env: imageEnvironment(), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const listening = new Promise<{ http: number }>((resolve, reject) => {
      broker.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString();
        const line = output.split("\n").find((l) => l.includes("oauth-broker listening"));
        if (line) resolve(JSON.parse(line) as { http: number });
      });
      broker.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
      broker.once("exit", (code) => reject(new Error(`exited with ${code}:\n${output}`)));
    });
    const exited = new Promise<number | null>((resolve) => broker.once("exit", resolve));
    try {
      const { http } = await listening;
      expect((await fetch(`http://127.0.0.1:${http}/readyz`)).status).toBe(200);
      // The image's heap cap is in force: under its environment V8's limit is the capped one.
      const limit = await run(process.execPath, ["-p", "require('node:v8').getHeapStatistics().heap_size_limit"], { cwd: app, env: imageEnvironment() });
      expect(Number(limit.stdout)).toBeLessThan(200 * 1024 * 1024);
      const verify = await run(process.execPath, ["dist/cli/audit-verify.js"], { cwd: app, env: imageEnvironment() });
      expect(verify.stdout).toMatch(/^audit chain intact/);
    } finally {
      broker.kill("SIGTERM");
    }
    expect(await exited, output).toBe(0);
    expect(output).toContain('"msg":"stopped"');
    expect(output).not.toMatch(/"level":(50|60)/);
  }, 120_000);
});
