/**
 * Bulk seeding of sandbox integrations with their token sets, through `unnest` in batches (one
 * statement per table per batch). Every ciphertext is real: made by the broker's own cipher and
 * bound to its row, so any seeded row the benchmark reads goes through the real decrypt.
 */
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import type { Cipher } from "../../src/domain/ports.js";

export interface SeedOptions {
  readonly databaseUrl: string;
  readonly cipher: Cipher;
  readonly count: number;
  /** Prefix of user ids and account ids, so several seedings of one database do not collide. */
  readonly label: string;
  readonly batchSize?: number;
  /** The integrations' provider id (default the sandbox) and the scopes granted there. */
  readonly provider?: string;
  readonly scopes?: readonly string[];
  /** How long the seeded access tokens live from now (default one day). */
  readonly expiresInMs?: number;
}

export interface Seeded {
  readonly ids: string[];
  /** The plaintext refresh token stored for each of `ids`, in the same order. */
  readonly refreshTokens: string[];
  readonly ms: number;
}

export async function seedIntegrations(options: SeedOptions): Promise<Seeded> {
  const started = performance.now();
  const sql = postgres(options.databaseUrl, { max: 2, onnotice: () => {} });
  const batchSize = options.batchSize ?? 5_000;
  const ids: string[] = [];
  const refreshTokens: string[] = [];
  const provider = options.provider ?? "sandbox";
  const scopes = [...(options.scopes ?? ["sandbox.read"])];
  const expiresInMs = options.expiresInMs ?? 86_400_000;
  try {
    for (let offset = 0; offset < options.count; offset += batchSize) {
      const n = Math.min(batchSize, options.count - offset);
      const batch = Array.from({ length: n }, () => randomUUID());
      const plaintexts = batch.flatMap((id, i) => [
        { plaintext: `bench-access-${options.label}-${offset + i}-${id.slice(0, 8)}`, context: id },
        { plaintext: `bench-refresh-${options.label}-${offset + i}-${id.slice(0, 8)}`, context: id },
      ]);
      const ciphertexts = await options.cipher.encryptBatch(plaintexts);
      const users = batch.map((_, i) => `bench-${options.label}-${offset + i}`);
      await sql.begin(async (tx) => {
        await tx`
          insert into integrations (id, user_id, provider, external_account_id, external_account_name, granted_scopes, last_refreshed_at)
          select id, user_id, ${provider}, user_id, user_id, ${scopes}::text[], now()
          from unnest(${batch}::uuid[], ${users}::text[]) as t(id, user_id)`;
        await tx`
          insert into token_sets (integration_id, access_token_ciphertext, refresh_token_ciphertext, token_type, scopes, expires_at)
          select id, access, refresh, 'Bearer', ${scopes}::text[], now() + ${expiresInMs} * interval '1 millisecond'
          from unnest(${batch}::uuid[], ${ciphertexts.filter((_, i) => i % 2 === 0)}::text[], ${ciphertexts.filter((_, i) => i % 2 === 1)}::text[])
            as t(id, access, refresh)`;
      });
      ids.push(...batch);
      refreshTokens.push(...plaintexts.filter((_, i) => i % 2 === 1).map((p) => p.plaintext));
    }
    await sql`analyze integrations`;
    await sql`analyze token_sets`;
  } finally {
    await sql.end();
  }
  return { ids, refreshTokens, ms: performance.now() - started };
}
