/**
 * Ctrl-C under `npm start`: the terminal signals the whole foreground process group (npm, node,
 * and formerly the embedded PostgreSQL). Each press must drain and stop cleanly.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let data: BrokerDataDir;

beforeAll(async () => {
  data = await createBrokerDataDir("oauth-broker-ctrlc", createLogger({ level: "silent" }));
});
afterAll(async () => {
  await data?.remove();
});

/** `npm start` as a terminal runs it: its own process group, which the test then signals as a whole. */
async function startAndPressCtrlC(): Promise<{ exit: number | string | null; output: string }> {
  const child = spawn("npm", ["start"], {
    cwd: ROOT,
    detached: true,
    env: {
      PATH: process.env["PATH"] ?? "",
      HOME: process.env["HOME"] ?? data.dir,
      BROKER_DATA_DIR: data.dir,
      BROKER_GRPC_ADDR: "127.0.0.1:0",
      BROKER_HTTP_ADDR: "127.0.0.1:0",
      npm_config_update_notifier: "false",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const listening = new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("oauth-broker listening")) resolve();
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  await Promise.race([listening, exited]);
  if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, "SIGINT");
  const [code, signal] = await exited;
  return { exit: code ?? signal, output };
}

describe("Ctrl-C under npm start", () => {
  it("drains and stops cleanly, five fresh brokers in a row", async () => {
    for (let round = 1; round <= 5; round++) {
      const { exit, output } = await startAndPressCtrlC();
      const lines = output.split("\n").filter((line) => line.startsWith("{"));
      const messages = lines.map((line) => JSON.parse(line) as { level: number; msg: string });
      // npm ends as a shell expects of a Ctrl-C'd command (by the signal) once the broker exited 0.
      expect({ round, exit }, output).toEqual({ round, exit: "SIGINT" });
      expect(messages.map((m) => m.msg)).toEqual(expect.arrayContaining(["draining: refusing new calls", "stopped"]));
      expect(messages.filter((m) => m.level >= 50), output).toEqual([]);
      expect(output).not.toContain("second signal");
      // Quiet on a supported runtime: no dependency's notice that Node 20 is unsupported.
      expect(output).not.toContain("Unsupported runtime");
    }
  }, 300_000);
});
