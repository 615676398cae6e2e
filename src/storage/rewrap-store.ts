/**
 * The SQL of the key re-wrap job (jobs/rewrap.ts): the rows holding a ciphertext below a key
 * version, read in primary-key order from the `…:vN:` prefix (no decryption), and the writes
 * back, each only if nobody changed the row meanwhile — `token_sets` on the version and the
 * ciphertexts read, sessions on the ciphertext read. The version column is not incremented, so
 * a refresh that read the row before the re-wrap still succeeds.
 */
import type postgres from "postgres";

/** A token set's ciphertexts as read, the condition of its write-back. */
export interface StoredTokenCiphertexts {
  readonly integrationId: string;
  readonly accessTokenCiphertext: string;
  readonly refreshTokenCiphertext: string | null;
  readonly version: string;
}

/** An authorization session's PKCE verifier ciphertext as read. */
export interface StoredVerifierCiphertext {
  readonly sessionId: string;
  readonly codeVerifierCiphertext: string;
}

export interface RewrapStore {
  countTokenSetsBelow(version: number): Promise<number>;
  /** The next `limit` token sets with a ciphertext below `version`, after `afterId` in id order. */
  tokenSetsBelow(version: number, afterId: string | undefined, limit: number): Promise<StoredTokenCiphertexts[]>;
  /** False when the row changed since it was read (a refresh won). */
  writeTokenSet(read: StoredTokenCiphertexts, accessTokenCiphertext: string, refreshTokenCiphertext: string | null): Promise<boolean>;
  countSessionsBelow(version: number): Promise<number>;
  sessionsBelow(version: number, afterId: string | undefined, limit: number): Promise<StoredVerifierCiphertext[]>;
  writeSession(read: StoredVerifierCiphertext, codeVerifierCiphertext: string): Promise<boolean>;
}

interface TokenSetRow {
  readonly integration_id: string;
  readonly access_token_ciphertext: string;
  readonly refresh_token_ciphertext: string | null;
  readonly version: string;
}

interface SessionRow {
  readonly id: string;
  readonly code_verifier_ciphertext: string;
}

/** The key version in a ciphertext's prefix; a ciphertext without one counts as version 0. */
const VERSION_PATTERN = "^[a-z]+:v([0-9]{1,9}):";

export function createRewrapStore(sql: postgres.Sql): RewrapStore {
  const below = (column: string, version: number) => sql`coalesce(substring(${sql(column)} from ${VERSION_PATTERN})::int, 0) < ${version}`;
  const tokenSetNeeds = (version: number) =>
    sql`(${below("access_token_ciphertext", version)} or (refresh_token_ciphertext is not null and ${below("refresh_token_ciphertext", version)}))`;
  const sessionNeeds = (version: number) => sql`(code_verifier_ciphertext is not null and ${below("code_verifier_ciphertext", version)})`;

  return {
    async countTokenSetsBelow(version) {
      const [{ total } = { total: 0 }] = await sql<Array<{ total: number }>>`select count(*)::int as total from token_sets where ${tokenSetNeeds(version)}`;
      return total;
    },
    async tokenSetsBelow(version, afterId, limit) {
      const rows = await sql<TokenSetRow[]>`
        select integration_id::text as integration_id, access_token_ciphertext, refresh_token_ciphertext, version::text as version
        from token_sets
        where ${tokenSetNeeds(version)} ${afterId === undefined ? sql`` : sql`and integration_id > ${afterId}::uuid`}
        order by integration_id
        limit ${limit}`;
      return rows.map((row) => ({
        integrationId: row.integration_id,
        accessTokenCiphertext: row.access_token_ciphertext,
        refreshTokenCiphertext: row.refresh_token_ciphertext,
        version: row.version,
      }));
    },
    async writeTokenSet(read, access, refresh) {
      const result = await sql`
        update token_sets
        set access_token_ciphertext = ${access}, refresh_token_ciphertext = ${refresh}
        where integration_id = ${read.integrationId}::uuid
          and version = ${read.version}::bigint
          and access_token_ciphertext = ${read.accessTokenCiphertext}
          and refresh_token_ciphertext is not distinct from ${read.refreshTokenCiphertext}::text`;
      return result.count === 1;
    },
    async countSessionsBelow(version) {
      const [{ total } = { total: 0 }] = await sql<Array<{ total: number }>>`select count(*)::int as total from authorization_sessions where ${sessionNeeds(version)}`;
      return total;
    },
    async sessionsBelow(version, afterId, limit) {
      const rows = await sql<SessionRow[]>`
        select id::text as id, code_verifier_ciphertext
        from authorization_sessions
        where ${sessionNeeds(version)} ${afterId === undefined ? sql`` : sql`and id > ${afterId}::uuid`}
        order by id
        limit ${limit}`;
      return rows.map((row) => ({ sessionId: row.id, codeVerifierCiphertext: row.code_verifier_ciphertext }));
    },
    async writeSession(read, rewrapped) {
      const result = await sql`
        update authorization_sessions set code_verifier_ciphertext = ${rewrapped}
        where id = ${read.sessionId}::uuid and code_verifier_ciphertext = ${read.codeVerifierCiphertext}`;
      return result.count === 1;
    },
  };
}
