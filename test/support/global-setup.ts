/**
 * Provides one PostgreSQL server for the whole run: `TEST_DATABASE_URL` when given (CI sets it to
 * the machine's server), otherwise an embedded PostgreSQL in a temporary directory.
 * Each test file then creates its own database on it (see `database.ts`).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres } from "../../src/storage/embedded-postgres.js";
import { rootServerHome } from "../../src/storage/embedded-postgres-layout.js";

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const given = process.env["TEST_DATABASE_URL"];
  if (given) {
    project.provide("adminDatabaseUrl", given);
    return async () => {};
  }
  const dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-test-pg-"));
  const embedded = await startEmbeddedPostgres({ dataDir, port: 0 });
  project.provide("adminDatabaseUrl", embedded.url);
  return async () => {
    await embedded.stop();
    // As root the embedded server's home is outside the data directory.
    await rm(rootServerHome(dataDir), { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}
