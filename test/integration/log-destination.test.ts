/**
 * The destination `npm start` logs through: pino's asynchronous SonicBoom fed buffers. Every line
 * arrives whole, in order and with its multi-byte characters intact, also when lines come far
 * faster than the file takes them, and whatever is still buffered when the process exits is
 * written before it ends; once the reader of a pipe is gone, lines are dropped, not hoarded.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger, logDestination } from "../../src/observability/logger.js";

/** The first line of a child's script: the broker's logger, with its default destination. */
const IMPORT_LOGGER = `import { createLogger } from ${JSON.stringify(new URL("../../src/observability/logger.ts", import.meta.url).pathname)};`;

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "oauth-broker-log-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function linesOf(path: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path, "utf8");
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("logDestination", () => {
  it("writes every line of a burst whole and in order, multi-byte characters included", async () => {
    const path = join(dir, "broker.log");
    const logger = createLogger({ level: "info", destination: logDestination(path) });
    // Written in one turn of the event loop: all but the first wait in SonicBoom's buffer
    // while the first write is in flight, and go out in chunks.
    for (let i = 0; i < 5_000; i += 1) logger.info({ i, user: "zoë-🦊" }, "rpc ✓");
    await expect.poll(async () => (await linesOf(path)).length, { timeout: 10_000 }).toBe(5_000);
    const lines = await linesOf(path);
    expect(lines.map((line) => line["i"])).toEqual(Array.from({ length: 5_000 }, (_, i) => i));
    expect(lines.every((line) => line["user"] === "zoë-🦊" && line["msg"] === "rpc ✓")).toBe(true);
  });

  it("keeps the logger's redaction", async () => {
    const path = join(dir, "broker.log");
    const logger = createLogger({ level: "info", destination: logDestination(path) });
    logger.info({ refreshToken: "1//secret-refresh-token" }, "refreshed");
    await expect.poll(async () => (await linesOf(path)).length).toBe(1);
    const text = await readFile(path, "utf8");
    expect(text).not.toContain("secret-refresh-token");
    expect((await linesOf(path))[0]).toMatchObject({ refreshToken: "[redacted]", msg: "refreshed" });
  });

  it("writes what is still buffered when the process exits right after logging", async () => {
    // As main.ts does after a shutdown: log, then process.exit at once.
    const script = [
      IMPORT_LOGGER,
      `const logger = createLogger({ level: "info" });`,
      `for (let i = 0; i < 2000; i += 1) logger.info({ i }, "line");`,
      `logger.info("stopped");`,
      `process.exit(0);`,
    ].join("\n");
    const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(child.status).toBe(0);
    const lines = child.stdout.split("\n").filter((line) => line !== "");
    expect(lines).toHaveLength(2001);
    expect(JSON.parse(lines.at(-1) ?? "{}")).toMatchObject({ msg: "stopped" });
  });

  it("drops lines instead of keeping them in memory once the reader of its pipe has gone", async () => {
    // Bursts of lines for a second and a half, then the memory still held in buffers, on stderr
    // (about 25 MB when the lines were kept).
    const script = [
      IMPORT_LOGGER,
      `const logger = createLogger({ level: "info" });`,
      `const until = Date.now() + 1500;`,
      `const burst = () => {`,
      `  for (let i = 0; i < 2000; i += 1) logger.info({ i, filler: "x".repeat(256) }, "line");`,
      `  if (Date.now() < until) setImmediate(burst);`,
      `  else {`,
      `    globalThis.gc?.();`,
      `    process.stderr.write(String(process.memoryUsage().arrayBuffers), () => process.exit(0));`,
      `  }`,
      `};`,
      `burst();`,
    ].join("\n");
    const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    // Read a little, then go away: the broker's stdout piped into a reader that died.
    child.stdout.once("data", () => child.stdout.destroy());
    const status = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(status).toBe(0);
    const held = Number(stderr.trim());
    expect(Number.isFinite(held)).toBe(true);
    expect(held).toBeLessThan(8 * 1024 * 1024);
  }, 30_000);
});
