/**
 * A fresh, migrated database per test file on the run's PostgreSQL server, dropped afterwards,
 * so integration test files can run in parallel without seeing each other's rows.
 */
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { inject } from "vitest";
import { runMigrations } from "../../src/storage/migrate.js";

export interface TestDatabase {
  /** Connection string of the new database (for child processes). */
  readonly url: string;
  readonly sql: postgres.Sql;
  drop(): Promise<void>;
}

export function adminDatabaseUrl(): string {
  return inject("adminDatabaseUrl");
}

export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = adminDatabaseUrl();
  const name = `t_${randomBytes(6).toString("hex")}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: 5, onnotice: () => {} });
  if (options.migrate !== false) await runMigrations(sql);
  return {
    url: url.toString(),
    sql,
    async drop() {
      await sql.end({ timeout: 5 });
      const cleanup = postgres(adminUrl, { max: 1, onnotice: () => {} });
      await cleanup.unsafe(`drop database if exists ${name} with (force)`);
      await cleanup.end();
    },
  };
}
