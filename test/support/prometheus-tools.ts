/**
 * Prometheus's own binaries for the tests, as Debian's `prometheus` package installs them
 * (.ci/run does): `promtool` for rule checks, rule unit tests and the exposition lint, and a
 * real `prometheus` server. Without them the tests skip with a message saying so, except under
 * CI (`CI=true`), where a missing binary fails the test instead of hiding it.
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

export type PrometheusTool = "promtool" | "prometheus";

export function findExecutable(name: string): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/**
 * Why tests needing `tools` should skip, or undefined when they should run: when every binary
 * is there, and under CI whatever is missing (the test then fails at `requireTool`).
 */
export function skipWithout(...tools: PrometheusTool[]): string | undefined {
  const missing = tools.filter((tool) => findExecutable(tool) === undefined);
  if (missing.length === 0 || process.env["CI"] === "true") return undefined;
  const reason = `skipped: ${missing.join(" and ")} not on PATH (apt-get install --no-install-recommends prometheus; CI=true fails instead)`;
  console.warn(reason);
  return reason;
}

export function requireTool(tool: PrometheusTool): string {
  const path = findExecutable(tool);
  if (path === undefined) throw new Error(`${tool} is not on PATH: install Debian's prometheus package (see .ci/run)`);
  return path;
}

export interface ToolRun {
  readonly code: number | null;
  /** stdout and stderr together, in the order written: promtool reports on both. */
  readonly output: string;
}

/** Runs promtool with `args` (and `input` on stdin) and resolves when it exits. */
export async function runPromtool(args: readonly string[], input?: string): Promise<ToolRun> {
  const child = spawn(requireTool("promtool"), args, { stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  child.stdin.end(input);
  return { code: await exited, output };
}
