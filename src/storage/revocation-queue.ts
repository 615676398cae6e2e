/**
 * Revocations the provider has not confirmed yet (RFC 7009 §2.2.1: on 503, retry later). Rows
 * are created with the tombstone (integration-repository `markDeleted`) and leave when the
 * provider confirms or the broker gives up; the token in them stays a ciphertext bound to the
 * integration id.
 */
import type postgres from "postgres";
import type { PendingRevocation, RevocationQueue } from "../domain/integration-deletion.js";
import { guarded } from "./database.js";

interface PendingRevocationRow {
  integration_id: string;
  user_id: string;
  provider: string;
  token_ciphertext: string;
  token_type_hint: "access_token" | "refresh_token";
  attempts: number;
  created_at: Date;
}

export function createRevocationQueue(sql: postgres.Sql): RevocationQueue {
  return {
    /**
     * Due revocations, each pushed `ttlMs` into the future in the same statement: a replica
     * that dies mid-attempt leaves it due again later, and `skip locked` keeps two replicas
     * from attempting the same one.
     */
    claimDue: (limit, ttlMs) =>
      guarded("claim pending revocations", async () => {
        const rows = await sql<PendingRevocationRow[]>`
          with due as (
            select integration_id from pending_revocations where next_attempt_at <= now()
            order by next_attempt_at limit ${limit} for update skip locked)
          update pending_revocations p set next_attempt_at = now() + ${ttlMs} * interval '1 millisecond'
          from due, integrations i
          where p.integration_id = due.integration_id and i.id = p.integration_id
          returning p.integration_id, i.user_id, p.provider, p.token_ciphertext, p.token_type_hint, p.attempts, p.created_at`;
        return rows.map(
          (row): PendingRevocation => ({
            integrationId: row.integration_id,
            userId: row.user_id,
            provider: row.provider,
            tokenCiphertext: row.token_ciphertext,
            hint: row.token_type_hint,
            attempts: row.attempts,
            createdAt: row.created_at,
          }),
        );
      }),

    complete: (integrationId) =>
      guarded("finish the pending revocation", async () => {
        await sql`delete from pending_revocations where integration_id = ${integrationId}`;
      }),

    reschedule: (integrationId, nextAttemptAt, lastError) =>
      guarded("reschedule the pending revocation", async () => {
        await sql`update pending_revocations set attempts = attempts + 1, next_attempt_at = ${nextAttemptAt},
                    last_error = ${lastError}
                  where integration_id = ${integrationId}`;
      }),
  };
}
