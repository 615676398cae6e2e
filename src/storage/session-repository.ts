/**
 * One-time authorization sessions, found by the hash of their state. The state itself and the
 * PKCE verifier in plaintext are never stored (the verifier is a Cipher ciphertext).
 */
import type postgres from "postgres";
import type { AuthorizationSession } from "../domain/types.js";
import { guarded } from "./database.js";

interface SessionRow {
  id: string;
  user_id: string;
  provider: string;
  requested_scopes: string[];
  return_to: string;
  code_verifier_ciphertext: string | null;
  nonce: string | null;
  created_at: Date;
  expires_at: Date;
}

function toSession(row: SessionRow): AuthorizationSession {
  return {
    id: row.id,
    userId: row.user_id,
    provider: row.provider,
    requestedScopes: row.requested_scopes,
    returnTo: row.return_to,
    codeVerifierCiphertext: row.code_verifier_ciphertext,
    nonce: row.nonce,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

export type SessionRepository = ReturnType<typeof createSessionRepository>;

export function createSessionRepository(sql: postgres.Sql) {
  return {
    /** Stores a new session; a state hash already in use is `already_exists`. */
    async create(session: AuthorizationSession & { readonly stateHash: string }): Promise<void> {
      return guarded("store the authorization session", async () => {
        await sql`
          insert into authorization_sessions (id, state_hash, user_id, provider, requested_scopes, return_to,
            code_verifier_ciphertext, nonce, created_at, expires_at)
          values (${session.id}, ${session.stateHash}, ${session.userId}, ${session.provider}, ${[...session.requestedScopes]},
            ${session.returnTo}, ${session.codeVerifierCiphertext}, ${session.nonce}, ${session.createdAt}, ${session.expiresAt})`;
      });
    },

    /** Deletes and returns the session: a state is usable once, even when the attempt fails. */
    async consume(stateHash: string): Promise<AuthorizationSession | undefined> {
      return guarded("read the authorization session", async () => {
        const [row] = await sql<SessionRow[]>`delete from authorization_sessions where state_hash = ${stateHash} returning *`;
        return row ? toSession(row) : undefined;
      });
    },

    /** Deletes up to `limit` sessions that expired before `before`; returns how many. */
    async purgeExpired(before: Date, limit: number): Promise<number> {
      return guarded("purge expired authorization sessions", async () => {
        const rows = await sql`
          delete from authorization_sessions where id in (
            select id from authorization_sessions where expires_at < ${before}
            order by expires_at limit ${limit} for update skip locked)`;
        return rows.count;
      });
    },
  };
}
