/**
 * The maintenance commands on the embedded default, as the README runs them: beside a running
 * broker (they use its PostgreSQL, found through the cluster's postmaster.pid) and with it stopped.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import type { BrokerProcess } from "../support/broker-process.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);
let data: BrokerDataDir;
let broker: BrokerProcess | undefined;

beforeAll(async () => {
  data = await createBrokerDataDir("oauth-broker-commands", createLogger({ level: "silent" }));
  broker = await data.startBroker({}, 60_000);
}, 90_000);

afterAll(async () => {
  await broker?.stop();
  await data?.remove();
});

/** `npm run -s <script>`, as the README pipes them. */
async function npmRun(script: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run("npm", ["run", "-s", script, ...(args.length > 0 ? ["--", ...args] : [])], {
    cwd: ROOT,
    env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? data.dir, BROKER_DATA_DIR: data.dir, LOG_LEVEL: "warn" },
    timeout: 60_000,
  });
}

async function everyCommand(): Promise<void> {
  expect((await npmRun("audit:verify")).stdout).toMatch(/^audit chain intact: \d+ events verified/);
  const exported = (await npmRun("audit:export")).stdout.split("\n").filter((line) => line !== "");
  // Only the events: each line is JSON, nothing of npm's banner.
  for (const line of exported) expect(() => JSON.parse(line) as unknown).not.toThrow();
  await npmRun("migrate");
  await npmRun("rewrap");
  expect((await npmRun("token", "--user", "alice")).stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
}

describe("the commands on the embedded default", () => {
  it("work beside the running broker, which keeps serving", async () => {
    await everyCommand();
    expect((await fetch(`${broker?.httpUrl ?? ""}/readyz`)).status).toBe(200);
    expect(broker?.output()).not.toContain("exited unexpectedly");
  }, 240_000);

  it("work with the broker stopped", async () => {
    expect(await broker?.stop()).toBe(0);
    broker = undefined;
    await everyCommand();
  }, 240_000);
});
