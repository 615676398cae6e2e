/**
 * A real Prometheus (the `prometheus` binary) for a test: its own temporary directory for the
 * configuration and the TSDB, listening on a free loopback port, scraping the given targets and
 * evaluating the given rule files every second. `stop()` ends it and removes the directory.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./free-port.js";
import { waitUntil } from "./peer-connect.js";
import { requireTool } from "./prometheus-tools.js";

export interface PrometheusOptions {
  readonly job: string;
  /** `host:port` of each target, scraped at `/metrics` over HTTP. */
  readonly targets: readonly string[];
  readonly ruleFiles?: readonly string[];
  readonly scrapeIntervalSeconds?: number;
}

/** A Prometheus HTTP API answer: `data` on success, `errorType` and `error` otherwise. */
export interface ApiAnswer<T> {
  readonly httpStatus: number;
  readonly status: "success" | "error";
  readonly data?: T;
  readonly errorType?: string;
  readonly error?: string;
}

export interface VectorSample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: readonly [number, string];
}

export interface MatrixSeries {
  readonly metric: Readonly<Record<string, string>>;
  readonly values: ReadonlyArray<readonly [number, string]>;
}

export interface QueryResult<T> {
  readonly resultType: string;
  readonly result: T;
}

export interface RunningPrometheus {
  readonly url: string;
  api<T>(path: string, params?: Record<string, string>): Promise<ApiAnswer<T>>;
  /** An instant query; throws unless Prometheus answers with success. */
  vector(expr: string): Promise<VectorSample[]>;
  output(): string;
  stop(): Promise<void>;
}

export async function startPrometheus(options: PrometheusOptions): Promise<RunningPrometheus> {
  const binary = requireTool("prometheus");
  const dir = await mkdtemp(join(tmpdir(), "oauth-broker-prometheus-"));
  const interval = `${options.scrapeIntervalSeconds ?? 1}s`;
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    rule_files: options.ruleFiles ?? [],
    scrape_configs: [{ job_name: options.job, static_configs: [{ targets: options.targets }] }],
  };
  // JSON is YAML: no serialiser needed.
  await writeFile(join(dir, "prometheus.yml"), JSON.stringify(config, null, 2));
  const port = await freePort();
  const child = spawn(
    binary,
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, "exit");
  const url = `http://127.0.0.1:${port}`;

  async function stop(): Promise<void> {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  }

  async function api<T>(path: string, params: Record<string, string> = {}): Promise<ApiAnswer<T>> {
    const response = await fetch(`${url}${path}?${new URLSearchParams(params).toString()}`);
    const body = (await response.json()) as Omit<ApiAnswer<T>, "httpStatus">;
    return { httpStatus: response.status, ...body };
  }

  try {
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${output}`);
      const ready = await fetch(`${url}/-/ready`).catch(() => undefined);
      return ready?.status === 200;
    }, "Prometheus is ready", 60_000, 100);
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    url,
    api,
    async vector(expr) {
      const answer = await api<QueryResult<VectorSample[]>>("/api/v1/query", { query: expr });
      if (answer.status !== "success" || answer.data === undefined) throw new Error(`${expr}: ${answer.errorType ?? ""} ${answer.error ?? ""}`);
      return answer.data.result;
    },
    output: () => output,
    stop,
  };
}
