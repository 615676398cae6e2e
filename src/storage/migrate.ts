/**
 * Versioned SQL migrations: `migrations/NNNN_name.sql`, forward-only, each in its own
 * transaction and recorded in `schema_migrations` with its checksum. An advisory transaction
 * lock serializes replicas that start at once; after taking it a replica re-checks what is
 * applied, so every version runs exactly once and every replica's start succeeds.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type postgres from "postgres";
import { BrokerError } from "../domain/errors.js";
import type { Logger } from "../observability/logger.js";
import { toBrokerError } from "./database.js";

export interface Migration {
  readonly version: number;
  /** The file name, e.g. `0001_initial.sql`. */
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

export interface MigrationOptions {
  readonly logger?: Logger | undefined;
  /** Where the `NNNN_name.sql` files are; defaults to the ones shipped beside this module. */
  readonly directory?: string | undefined;
}

/** Arbitrary, fixed: the advisory lock id all replicas agree on. */
const MIGRATION_LOCK_ID = "7314202611";
const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

/**
 * Beside this module (`src/storage/migrations/`, or `dist/storage/migrations/` when the build
 * copies them); a compiled build without the copy falls back to the sources.
 */
function defaultDirectory(): string {
  const beside = fileURLToPath(new URL("./migrations/", import.meta.url));
  if (existsSync(beside)) return beside;
  const sources = fileURLToPath(new URL("../../src/storage/migrations/", import.meta.url));
  return existsSync(sources) ? sources : beside;
}

const cache = new Map<string, readonly Migration[]>();

/** The migration files in version order; read once per directory. */
export function loadMigrations(directory: string = defaultDirectory()): readonly Migration[] {
  const cached = cache.get(directory);
  if (cached) return cached;
  const seen = new Map<number, string>();
  const migrations = readdirSync(directory)
    .map((file) => ({ file, match: FILE_PATTERN.exec(file) }))
    .filter((entry): entry is { file: string; match: RegExpExecArray } => entry.match !== null)
    .map(({ file, match }): Migration => {
      const version = Number(match[1]);
      const other = seen.get(version);
      if (other !== undefined) throw new BrokerError("internal", `migrations ${other} and ${file} share version ${version}`);
      seen.set(version, file);
      // Line endings normalised: a checkout with CRLF is the same migration.
      const sql = readFileSync(join(directory, file), "utf8").replace(/\r\n/g, "\n");
      return { version, name: file, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    })
    .sort((a, b) => a.version - b.version);
  cache.set(directory, migrations);
  return migrations;
}

export function latestMigrationVersion(): number {
  return loadMigrations().at(-1)?.version ?? 0;
}

const CREATE_TABLE = `create table if not exists schema_migrations (
  version    integer primary key,
  name       text not null,
  checksum   text not null,
  applied_at timestamptz not null default now()
)`;

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

function verifyChecksum(migration: Migration, row: AppliedRow): void {
  if (row.checksum !== migration.checksum) {
    throw new BrokerError(
      "failed_precondition",
      `migration ${migration.name} was changed after it was applied; migrations are forward-only: restore the file and add a new one instead`,
      { reason: "MIGRATION_CHANGED", metadata: { migration: migration.name } },
    );
  }
}

/**
 * Applies the pending migrations. Safe to run on every start of every replica: concurrent
 * runners wait for each other on the advisory lock and skip what the other applied.
 */
export async function runMigrations(
  sql: postgres.Sql,
  options: MigrationOptions = {},
): Promise<{ applied: number[]; current: number }> {
  const migrations = loadMigrations(options.directory);
  const latest = migrations.at(-1)?.version ?? 0;
  const applied: number[] = [];
  let rows: AppliedRow[];
  try {
    // Under the lock: two concurrent `create table if not exists` can still collide on pg_type.
    rows = await sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_ID}::bigint)`;
      await tx.unsafe(CREATE_TABLE);
      return tx<AppliedRow[]>`select version, name, checksum from schema_migrations order by version`;
    });
  } catch (error) {
    throw toBrokerError(error, "prepare the schema migrations");
  }
  const known = new Map(rows.map((row) => [row.version, row]));
  for (const migration of migrations) {
    const row = known.get(migration.version);
    if (row) {
      verifyChecksum(migration, row);
      continue;
    }
    try {
      await sql.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_ID}::bigint)`;
        const [current] = await tx<AppliedRow[]>`
          select version, name, checksum from schema_migrations where version = ${migration.version}`;
        if (current) {
          verifyChecksum(migration, current);
          return;
        }
        const started = performance.now();
        await tx.unsafe(migration.sql);
        await tx`insert into schema_migrations (version, name, checksum)
                 values (${migration.version}, ${migration.name}, ${migration.checksum})`;
        applied.push(migration.version);
        options.logger?.info({ migration: migration.name, ms: Math.round(performance.now() - started) }, "migration applied");
      });
    } catch (error) {
      throw migrationError(error, migration);
    }
  }
  const newer = rows.filter((row) => row.version > latest);
  if (newer.length > 0) {
    // A newer release migrated already (rolling deploy); this one runs on the schema it knows.
    options.logger?.warn({ migrations: newer.map((row) => row.name), latest }, "the database has migrations this version does not know");
  }
  return { applied, current: Math.max(latest, ...rows.map((row) => row.version)) };
}

function migrationError(error: unknown, migration: Migration): BrokerError {
  const mapped = toBrokerError(error, `apply migration ${migration.name}`);
  if (mapped.code === "database_unavailable" || error instanceof BrokerError) return mapped;
  // Operators read this one: the PostgreSQL message says what in the file is wrong.
  const detail = error instanceof Error ? error.message : String(error);
  return new BrokerError("internal", `migration ${migration.name} failed and was rolled back: ${detail}`, {
    cause: error,
    reason: "MIGRATION_FAILED",
    metadata: { migration: migration.name },
  });
}

/** For /readyz and GetStatus: the highest applied version and the highest this build ships. */
export async function migrationStatus(sql: postgres.Sql): Promise<{ applied: number; latest: number }> {
  try {
    const [present] = await sql<{ table: string | null }[]>`select to_regclass('schema_migrations')::text as table`;
    if (!present?.table) return { applied: 0, latest: latestMigrationVersion() };
    const [row] = await sql<{ version: number | null }[]>`select max(version) as version from schema_migrations`;
    return { applied: row?.version ?? 0, latest: latestMigrationVersion() };
  } catch (error) {
    throw toBrokerError(error, "read the migration status");
  }
}
