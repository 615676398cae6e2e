/**
 * Broker replicas as separate processes, for the benchmarks that measure a replica itself (its
 * RSS, its CPU): started as the image runs them unless told otherwise, and filled with tokens by
 * a walk over distinct integrations.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import type { BrokerProcess } from "../../test/support/broker-process.js";
import { dockerfileRuntimeEnvironment } from "../../test/support/image-environment.js";
import { GET_ACCESS_TOKEN, tokenRequest } from "../cold-path.js";
import { unaryCall } from "./load.js";

/** Callers of a walk at once. */
export const WALK_CALLERS = 16;

/**
 * How the replicas run: by default as the image runs them, the compiled build (built here first)
 * with the Dockerfile's memory settings (`NODE_OPTIONS`, `MALLOC_ARENA_MAX`), since memory is
 * measured against them; `BENCH_CAPACITY_COMPILED=0` runs `src/main.ts` under tsx as `npm start`
 * does, with neither. `BENCH_CAPACITY_NODE_ARGS` adds Node options (they win over `NODE_OPTIONS`);
 * `MALLOC_ARENA_MAX`, when the bench has it, replaces the image's.
 */
export async function replicaProcessOptions(): Promise<{ script: "src/main.ts" | "dist/main.js"; nodeArgs: string[]; env: Record<string, string> }> {
  const nodeArgs = (process.env["BENCH_CAPACITY_NODE_ARGS"] ?? "").split(/\s+/).filter((arg) => arg !== "");
  const compiled = process.env["BENCH_CAPACITY_COMPILED"] ?? "1";
  if (compiled !== "0" && compiled !== "1") throw new Error(`BENCH_CAPACITY_COMPILED must be 1 or 0, got "${compiled}"`);
  const image = dockerfileRuntimeEnvironment();
  const memory: Record<string, string> = {};
  if (compiled === "1") {
    for (const name of ["NODE_OPTIONS", "MALLOC_ARENA_MAX"]) {
      const value = image[name];
      if (value !== undefined) memory[name] = value;
    }
  }
  const arenas = process.env["MALLOC_ARENA_MAX"];
  if (arenas !== undefined) memory["MALLOC_ARENA_MAX"] = arenas;
  if (compiled === "0") return { script: "src/main.ts", nodeArgs, env: memory };
  await promisify(execFile)("npm", ["run", "-s", "build"], { cwd: fileURLToPath(new URL("../..", import.meta.url)) });
  return { script: "dist/main.js", nodeArgs, env: memory };
}

/**
 * One GetAccessToken per integration of `ids`, 16 at a time: each lands in the replica's cache.
 * A call refused under load (the replicas share two cores with PostgreSQL) is asked again, so
 * the cache ends up holding every one; what refused it is printed.
 */
export async function walk(replica: BrokerProcess, ids: readonly string[], metadata: grpc.Metadata): Promise<{ retried: number; firstError: string | undefined }> {
  const client = new grpc.Client(replica.grpcAddress, grpc.credentials.createInsecure());
  const queue = ids.map((id) => ({ request: tokenRequest(id), attempts: 0 }));
  let retried = 0;
  let firstError: string | undefined;
  try {
    await Promise.all(
      Array.from({ length: WALK_CALLERS }, async () => {
        for (let item = queue.pop(); item !== undefined; item = queue.pop()) {
          const current = item;
          await unaryCall(client, GET_ACCESS_TOKEN, current.request, metadata).catch((error: unknown) => {
            firstError ??= error instanceof Error ? error.message : String(error);
            current.attempts += 1;
            if (current.attempts >= 5) throw new Error(`a call of the memory walk on ${replica.grpcAddress} failed 5 times: ${firstError}`);
            retried += 1;
            queue.unshift(current);
          });
        }
      }),
    );
  } finally {
    client.close();
  }
  return { retried, firstError };
}
