/**
 * Runs the broker as a real process (`src/main.ts` under tsx, as `npm start` does) and learns
 * its ports from the "oauth-broker listening" log line, so e2e tests can use port 0.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface BrokerProcess {
  readonly child: ChildProcess;
  readonly grpcAddress: string;
  readonly httpUrl: string;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface BrokerProcessOptions {
  /** Keep what the process writes for `output()` (default true); a long benchmark's log lines would pile up. */
  readonly retainOutput?: boolean;
  /** Node options before the script, e.g. `--max-old-space-size=…`. */
  readonly nodeArgs?: readonly string[];
  /** `dist/main.js` runs the compiled build (`npm run build`) as the image does; default `src/main.ts` under tsx. */
  readonly script?: "src/main.ts" | "dist/main.js";
}

export function spawnBroker(env: Record<string, string>, script = "src/main.ts", nodeArgs: readonly string[] = []): ChildProcess {
  // Compiled JavaScript needs no TypeScript loader, and without it the process holds less.
  const loader = script.endsWith(".ts") ? ["--import", "tsx"] : [];
  return spawn(process.execPath, [...nodeArgs, ...loader, script], {
    cwd: ROOT,
    env: {
      PATH: process.env["PATH"] ?? "",
      HOME: process.env["HOME"] ?? "/tmp",
      BROKER_GRPC_ADDR: "127.0.0.1:0",
      BROKER_HTTP_ADDR: "127.0.0.1:0",
      LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Resolves with the exit code and output of a process expected to end by itself. */
export async function runToExit(child: ChildProcess, timeoutMs = 20_000): Promise<{ code: number | null; output: string }> {
  let output = "";
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, output };
}

/**
 * Waits for readiness as long as the start makes progress: `idleMs` is the longest silence
 * allowed (a cold start on a loaded machine is slow but talks: cluster created, migrated, ...),
 * `capMs` the whole start at most.
 */
export async function startBrokerProcess(
  env: Record<string, string>,
  idleMs = 30_000,
  capMs = 180_000,
  options: BrokerProcessOptions = {},
): Promise<BrokerProcess> {
  const child = spawnBroker(env, options.script ?? "src/main.ts", options.nodeArgs);
  let output = "";
  let listening = false;
  const keep = (chunk: Buffer) => {
    if (!listening || options.retainOutput !== false) output += chunk.toString();
  };
  const ready = new Promise<{ grpc: number; http: number }>((resolve, reject) => {
    const fail = (what: string) => reject(new Error(`broker did not start: ${what}:\n${output}`));
    let timer = setTimeout(() => fail(`silent for ${idleMs} ms`), idleMs);
    const cap = setTimeout(() => fail(`not listening after ${capMs} ms`), capMs);
    const onData = (chunk: Buffer) => {
      if (listening) {
        keep(chunk);
        return;
      }
      clearTimeout(timer);
      timer = setTimeout(() => fail(`silent for ${idleMs} ms`), idleMs);
      keep(chunk);
      for (const line of output.split("\n")) {
        if (!line.includes("oauth-broker listening")) continue;
        try {
          const parsed = JSON.parse(line) as { grpc: number; http: number };
          clearTimeout(timer);
          clearTimeout(cap);
          listening = true;
          resolve(parsed);
        } catch {
          // Not a full line yet.
        }
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", keep);
    child.once("exit", (code) => {
      clearTimeout(timer);
      clearTimeout(cap);
      reject(new Error(`broker exited with ${code} before listening:\n${output}`));
    });
  });
  const ports = await ready;
  const exited = once(child, "exit") as Promise<[number | null]>;
  return {
    child,
    grpcAddress: `127.0.0.1:${ports.grpc}`,
    httpUrl: `http://127.0.0.1:${ports.http}`,
    output: () => output,
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = await exited;
      return code;
    },
  };
}
