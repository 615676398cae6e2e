/**
 * Versioned SQL migrations: `migrations/NNNN_name.sql`, forward-only, each in its own
 * transaction. An advisory transaction lock serializes replicas that start at once; after
 * taking it each replica re-checks what is applied, so every version runs exactly once.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type postgres from "postgres";
import type { Logger } from "../observability/logger.js";

interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

/** Arbitrary, fixed: the lock id all replicas agree on. */
const MIGRATION_LOCK_ID = 7_314_202_611;
const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));
const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

let cached: readonly Migration[] | undefined;

function migrations(): readonly Migration[] {
  if (cached) return cached;
  cached = readdirSync(MIGRATIONS_DIR)
    .map((file) => ({ file, match: FILE_PATTERN.exec(file) }))
    .filter((entry): entry is { file: string; match: RegExpExecArray } => entry.match !== null)
    .map(({ file, match }) => {
      const sql = readFileSync(`${MIGRATIONS_DIR}${file}`, "utf8");
      return {
        version: Number(match[1]),
        name: file,
        sql,
        checksum: createHash("sha256").update(sql).digest("hex"),
      };
    })
    .sort((a, b) => a.version - b.version);
  return cached;
}

export function latestMigrationVersion(): number {
  return migrations().at(-1)?.version ?? 0;
}

const CREATE_TABLE = `create table if not exists schema_migrations (
  version    integer primary key,
  name       text not null,
  checksum   text not null,
  applied_at timestamptz not null default now()
)`;

export async function runMigrations(
  sql: postgres.Sql,
  options: { logger?: Logger } = {},
): Promise<{ applied: number[]; current: number }> {
  const applied: number[] = [];
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_ID})`;
    await tx.unsafe(CREATE_TABLE);
  });
  for (const migration of migrations()) {
    await sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_ID})`;
      const [row] = await tx<{ checksum: string }[]>`select checksum from schema_migrations where version = ${migration.version}`;
      if (row) {
        if (row.checksum !== migration.checksum) {
          throw new Error(
            `migration ${migration.name} was changed after it was applied; migrations are forward-only: add a new file instead`,
          );
        }
        return;
      }
      await tx.unsafe(migration.sql);
      await tx`insert into schema_migrations (version, name, checksum) values (${migration.version}, ${migration.name}, ${migration.checksum})`;
      applied.push(migration.version);
      options.logger?.info({ migration: migration.name }, "migration applied");
    });
  }
  return { applied, current: latestMigrationVersion() };
}

export async function migrationStatus(sql: postgres.Sql): Promise<{ applied: number; latest: number }> {
  const [present] = await sql<{ table: string | null }[]>`select to_regclass('schema_migrations')::text as table`;
  if (!present?.table) return { applied: 0, latest: latestMigrationVersion() };
  const [row] = await sql<{ version: number | null }[]>`select max(version) as version from schema_migrations`;
  return { applied: row?.version ?? 0, latest: latestMigrationVersion() };
}
