/**
 * The README is executed: every shell block marked `<!-- runnable -->` runs, in order, in one
 * shell (placeholders are variables an earlier block set), against a broker started on the
 * embedded default, with its ports moved as "Run it" describes. The browser's part of the
 * flow (step 3) is done first, as the README's reader would have done it.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import type { BrokerProcess } from "../support/broker-process.js";
import { freePort } from "../support/free-port.js";
import { connectSandboxAccount } from "../support/browser-flow.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);
let data: BrokerDataDir;
let broker: BrokerProcess | undefined;

interface RunnableBlock {
  readonly line: number;
  readonly text: string;
}

/** The blocks after a `<!-- runnable -->` line, dedented to their fence. */
function runnableBlocks(markdown: string): RunnableBlock[] {
  const lines = markdown.split("\n");
  const blocks: RunnableBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== "<!-- runnable -->" || lines[i + 1]?.trim() !== "```sh") continue;
    const fence = lines[i + 1] ?? "";
    const indent = fence.length - fence.trimStart().length;
    const body: string[] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j]?.trim() !== "```"; j++) body.push((lines[j] ?? "").slice(indent));
    blocks.push({ line: i + 3, text: body.join("\n") });
    i = j;
  }
  return blocks;
}

beforeAll(async () => {
  data = await createBrokerDataDir("oauth-broker-readme", createLogger({ level: "silent" }));
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  // No BROKER_PUBLIC_URL: it follows the moved HTTP listener, or the sandbox flow below fails.
  broker = await data.startBroker({ BROKER_GRPC_ADDR: `127.0.0.1:${grpcPort}`, BROKER_HTTP_ADDR: `127.0.0.1:${httpPort}` }, 30_000);
  await connectSandboxAccount(broker.httpUrl, await data.token("alice", "user"), "alice");
}, 120_000);

afterAll(async () => {
  await broker?.stop();
  await rm(join(ROOT, "audit.jsonl"), { force: true });
  await data?.remove();
});

describe("the README's runnable examples", () => {
  it("run as written, in order, against the embedded default", async () => {
    const blocks = runnableBlocks(readFileSync(join(ROOT, "README.md"), "utf8"));
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    const grpc = broker?.grpcAddress ?? "";
    const http = new URL(broker?.httpUrl ?? "").host;
    const script = [
      "set -eu",
      ...blocks.map((block) => `echo "### README.md:${block.line}" >&2\n${block.text}`),
      'echo "### done" >&2',
    ]
      .join("\n")
      .replaceAll("127.0.0.1:50051", grpc)
      .replaceAll("127.0.0.1:8080", http);
    const result = await run("bash", ["-c", script], {
      cwd: ROOT,
      env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? data.dir, BROKER_DATA_DIR: data.dir, LOG_LEVEL: "warn" },
      timeout: 240_000,
      maxBuffer: 16 * 1024 * 1024,
    }).catch((error: { stdout?: string; stderr?: string; code?: number }) => error);
    const failedAt = /### (README\.md:\d+)(?![\s\S]*###)/.exec(result.stderr ?? "")?.[1];
    expect(failedAt, `${result.stderr ?? ""}\n${result.stdout ?? ""}`).toBe(undefined);
    expect(result.stderr).toContain("### done");
  }, 300_000);
});
