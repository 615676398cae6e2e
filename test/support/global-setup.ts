/**
 * Provides one PostgreSQL server for the whole run: `TEST_DATABASE_URL` when given (CI sets it to
 * the machine's server), otherwise an embedded PostgreSQL in a temporary directory.
 * Each test file then creates its own database on it (see `database.ts`).
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres } from "../../src/storage/embedded-postgres.js";
import { rootServerHome } from "../../src/storage/embedded-postgres-layout.js";

/**
 * tsx's transform cache, where tsx itself puts it (`<tmpdir>/tsx-<euid>`): the broker processes
 * the tests start as `npm start` does fill it. A run that found none leaves none behind.
 */
function tsxCacheCleanup(): () => Promise<void> {
  const cache = join(tmpdir(), `tsx-${process.geteuid?.() ?? userInfo().username}`);
  if (existsSync(cache)) return async () => {};
  return () => rm(cache, { recursive: true, force: true });
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const removeTsxCache = tsxCacheCleanup();
  const given = process.env["TEST_DATABASE_URL"];
  if (given) {
    project.provide("adminDatabaseUrl", given);
    return removeTsxCache;
  }
  const dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-test-pg-"));
  const embedded = await startEmbeddedPostgres({ dataDir, port: 0 });
  project.provide("adminDatabaseUrl", embedded.url);
  return async () => {
    await embedded.stop();
    // As root the embedded server's home is outside the data directory.
    await rm(rootServerHome(dataDir), { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
    await removeTsxCache();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}
