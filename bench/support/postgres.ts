/**
 * One PostgreSQL server for the whole benchmark run, with a fresh database per benchmark:
 * `TEST_DATABASE_URL` or `DATABASE_URL` when set (the server must allow CREATE DATABASE),
 * otherwise an embedded PostgreSQL in a temporary directory, as the broker's own default.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres } from "../../src/storage/embedded-postgres.js";

export interface BenchServer {
  /** Where the server came from, for the report. */
  readonly origin: string;
  /** Creates an empty database and returns its connection string. */
  createDatabase(label: string): Promise<string>;
  /** Drops every database created here, then stops an embedded server. */
  close(): Promise<void>;
}

export async function startBenchServer(): Promise<BenchServer> {
  const given = process.env["TEST_DATABASE_URL"] || process.env["DATABASE_URL"];
  let adminUrl: string;
  let stop: () => Promise<void>;
  let origin: string;
  if (given) {
    adminUrl = given;
    origin = process.env["TEST_DATABASE_URL"] ? "TEST_DATABASE_URL" : "DATABASE_URL";
    stop = async () => {};
  } else {
    const dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-bench-pg-"));
    const embedded = await startEmbeddedPostgres({ dataDir, port: 0 });
    adminUrl = embedded.url;
    origin = "embedded PostgreSQL";
    stop = async () => {
      await embedded.stop();
      await rm(dataDir, { recursive: true, force: true });
    };
  }
  const created: string[] = [];
  const admin = () => postgres(adminUrl, { max: 1, onnotice: () => {} });
  return {
    origin,
    async createDatabase(label) {
      const name = `bench_${label}_${randomBytes(4).toString("hex")}`;
      const sql = admin();
      try {
        await sql.unsafe(`create database ${name}`);
      } finally {
        await sql.end();
      }
      created.push(name);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async close() {
      const sql = admin();
      try {
        for (const name of created.splice(0)) await sql.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await sql.end();
        await stop();
      }
    },
  };
}
