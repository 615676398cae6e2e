/**
 * Token sets (the encrypted half of an integration) and the refresh lease. Writes are
 * conditional on the version read, so a slow or stale refresher can never overwrite a newer
 * token; the lease is a single-row compare-and-set, so no transaction or pooled connection is
 * held while a replica talks to the provider.
 */
import type postgres from "postgres";
import type { ClaimedRefresh, EncryptedTokenWrite, LeaseResult, TakenLease } from "../domain/ports.js";
import type { RefreshSentMark } from "../domain/tokens/refresh-takeover.js";
import type { EncryptedTokenSet } from "../domain/types.js";
import { guarded } from "./database.js";
import { integrationColumns, toIntegration, type IntegrationRow } from "./integration-repository.js";
import { TOKEN_CHANNEL } from "./token-notifications.js";

interface TokenSetRow {
  access_token_ciphertext: string;
  refresh_token_ciphertext: string | null;
  token_type: string;
  scopes: string[];
  expires_at: Date;
  version: string;
}


interface LeaseRow extends TokenSetRow {
  lease_expires_at: Date;
  refresh_sent_version: string | null;
  refresh_sent_by: string | null;
  refresh_sent_at: Date | null;
}

function tokenSetOf(row: TokenSetRow): EncryptedTokenSet {
  return {
    accessTokenCiphertext: row.access_token_ciphertext,
    refreshTokenCiphertext: row.refresh_token_ciphertext,
    tokenType: row.token_type,
    scopes: row.scopes,
    expiresAt: row.expires_at,
    version: Number(row.version),
  };
}

/** The columns a taken lease returns: the token set as the lease was taken, and its sent mark. */
function takenLeaseOf(row: LeaseRow): TakenLease {
  return { acquired: true, version: Number(row.version), tokenSet: tokenSetOf(row), expiresAt: row.lease_expires_at, sent: sentMarkOf(row) };
}

/** A mark for an older version is stale: a write since then stored the provider's answer. */
function sentMarkOf(row: LeaseRow): RefreshSentMark | undefined {
  if (row.refresh_sent_version === null || row.refresh_sent_by === null || row.refresh_sent_at === null) return undefined;
  if (row.refresh_sent_version !== row.version) return undefined;
  return { version: Number(row.refresh_sent_version), by: row.refresh_sent_by, at: row.refresh_sent_at };
}

export type TokenSetRepository = ReturnType<typeof createTokenSetRepository>;

export function createTokenSetRepository(sql: postgres.Sql) {
  return {
    get: (integrationId: string) =>
      guarded("read the token set", async (): Promise<EncryptedTokenSet | undefined> => {
        const [row] = await sql<TokenSetRow[]>`
          select access_token_ciphertext, refresh_token_ciphertext, token_type, scopes, expires_at, version::text
          from token_sets where integration_id = ${integrationId}`;
        return row ? tokenSetOf(row) : undefined;
      }),

    /**
     * Writes a refreshed token set if the stored version is still `expectedVersion`; returns the
     * new version, or undefined when someone else wrote first. The integration's bookkeeping
     * (last refresh, granted scopes, failure count) moves in the same statement, and so does what
     * follows every landed write: the change is announced on `TOKEN_CHANNEL` (`pg_notify`,
     * delivered at commit, so no replica hears of a version it cannot read yet) and, with
     * `releaseLeaseOf`, that owner's refresh lease goes back. The write, the notification and the
     * release that follow a provider's answer are one statement instead of three.
     *
     * One statement rather than `sql.begin`: when the connection dies inside a postgres.js 3.4.9
     * transaction, its ROLLBACK is written to the dead connection from a timer and throws outside
     * any caller (porsager/postgres#1208), taking the process, and a rotated refresh token held
     * only in memory, down with it. A single statement is atomic on its own.
     */
    writeIfVersion: (integrationId: string, expectedVersion: number, tokens: EncryptedTokenWrite, options?: { readonly releaseLeaseOf?: string }) =>
      guarded("store the refreshed token set", async () => {
        const scopes = [...tokens.scopes];
        const releasing = options?.releaseLeaseOf ?? null;
        const [row] = await sql<{ version: string }[]>`
          with written as (
            update token_sets set
              access_token_ciphertext = ${tokens.accessTokenCiphertext},
              refresh_token_ciphertext = coalesce(${tokens.refreshTokenCiphertext}::text, refresh_token_ciphertext),
              token_type = ${tokens.tokenType}, scopes = ${scopes}, expires_at = ${tokens.expiresAt},
              version = version + 1, updated_at = now(),
              refresh_sent_version = null, refresh_sent_by = null, refresh_sent_at = null,
              lease_owner = case when lease_owner = ${releasing}::text then null else lease_owner end,
              lease_expires_at = case when lease_owner = ${releasing}::text then null else lease_expires_at end
            where integration_id = ${integrationId} and version = ${expectedVersion}
            returning integration_id, version),
          bookkeeping as (
            update integrations i set last_refreshed_at = now(), granted_scopes = ${scopes},
              refresh_failure_count = 0, next_refresh_attempt_at = null,
              status_reason = case when i.status = 'active' then '' else i.status_reason end, updated_at = now()
            from written w
            where i.id = w.integration_id)
          select version::text, pg_notify(${TOKEN_CHANNEL}, integration_id::text || ':' || version::text) from written`;
        return row ? Number(row.version) : undefined;
      }),

    /**
     * Takes (or renews) the refresh lease: one compare-and-set statement, no transaction held.
     * A lease past its expiry (its holder died) is free for anyone. When refused, says who holds
     * it until when; `holder: undefined` means the token set is gone (deleted meanwhile).
     * `sent` is the mark of a refresh request sent with the stored refresh token whose outcome
     * nobody recorded (a holder that died after sending it): that refresh token may be spent.
     */
    acquireLease: (integrationId: string, owner: string, ttlMs: number) =>
      guarded("take the refresh lease", async (): Promise<LeaseResult> => {
        // Between a refused take and the read of the holder, the lease may have been released:
        // then take it again rather than report a free lease as held.
        for (let attempt = 0; ; attempt++) {
          const [taken] = await sql<LeaseRow[]>`
            update token_sets set lease_owner = ${owner},
              lease_expires_at = now() + ${Math.max(1, Math.round(ttlMs))} * interval '1 millisecond'
            where integration_id = ${integrationId}
              and (lease_owner is null or lease_expires_at < now() or lease_owner = ${owner})
            returning access_token_ciphertext, refresh_token_ciphertext, token_type, scopes, expires_at, version::text,
              lease_expires_at, refresh_sent_version::text, refresh_sent_by, refresh_sent_at`;
          if (taken) return takenLeaseOf(taken);
          const [holder] = await sql<{ lease_owner: string | null; lease_expires_at: Date | null; free: boolean }[]>`
            select lease_owner, lease_expires_at, (lease_owner is null or lease_expires_at < now()) as free
            from token_sets where integration_id = ${integrationId}`;
          if (!holder) return { acquired: false, holder: undefined, expiresAt: undefined };
          if (!holder.free && holder.lease_owner !== null && holder.lease_expires_at !== null) {
            return { acquired: false, holder: holder.lease_owner, expiresAt: holder.lease_expires_at };
          }
          if (attempt >= 2) return { acquired: false, holder: holder.lease_owner ?? "", expiresAt: new Date() };
        }
      }),

    /**
     * Gives the lease back early; only its owner can (another owner's call changes nothing).
     * The sent mark goes with it, unless `keepSentMark`: the holder does not know whether the
     * provider processed its request (timeout, lost connection).
     */
    releaseLease: (integrationId: string, owner: string, options?: { readonly keepSentMark?: boolean }) =>
      guarded("release the refresh lease", async () => {
        const keep = options?.keepSentMark === true;
        await sql`update token_sets set lease_owner = null, lease_expires_at = null,
                    refresh_sent_version = case when ${keep} then refresh_sent_version end,
                    refresh_sent_by = case when ${keep} then refresh_sent_by end,
                    refresh_sent_at = case when ${keep} then refresh_sent_at end
                  where integration_id = ${integrationId} and lease_owner = ${owner}`;
      }),

    /**
     * The heartbeat: extends the lease while `owner` still holds it (never takes it from another
     * replica). Returns false when the lease is no longer this owner's.
     */
    renewLease: (integrationId: string, owner: string, ttlMs: number) =>
      guarded("renew the refresh lease", async () => {
        const renewed = await sql`update token_sets
          set lease_expires_at = now() + ${Math.max(1, Math.round(ttlMs))} * interval '1 millisecond'
          where integration_id = ${integrationId} and lease_owner = ${owner}`;
        return renewed.count > 0;
      }),

    /**
     * Records, before the request leaves, that `owner` is sending the refresh token of token-set
     * `version` to the provider. Returns false when `owner` no longer holds the lease.
     */
    markRefreshSent: (integrationId: string, owner: string, version: number) =>
      guarded("mark the refresh request as sent", async () => {
        const marked = await sql`update token_sets
          set refresh_sent_version = ${version}, refresh_sent_by = ${owner}, refresh_sent_at = now()
          where integration_id = ${integrationId} and lease_owner = ${owner}`;
        return marked.count > 0;
      }),

    /**
     * For the proactive refresher: live integrations whose access token expires within
     * `withinMs`, whose lease is free and whose backoff has passed — leased to `owner` in the same
     * statement, which returns each lease as `acquireLease` would and the integration as
     * `integrations.get` would (the refresh needs no second take and no second read). `skip
     * locked` lets every replica claim concurrently without double work.
     * `exclude` names the integrations a pass already claimed, so one that failed without backing
     * off (the key service sealed) is not claimed again in the same pass.
     */
    claimExpiring: (options: { withinMs: number; limit: number; owner: string; ttlMs: number; exclude?: readonly string[] }) =>
      guarded("claim expiring tokens", async (): Promise<ClaimedRefresh[]> => {
        const rows = await sql<(LeaseRow & IntegrationRow & { integration_id: string })[]>`
          with candidates as (
            select t.integration_id from token_sets t join integrations i on i.id = t.integration_id
            where i.status = 'active'
              and t.refresh_token_ciphertext is not null
              -- Tokens that live shorter than the window would be claimed again right after
              -- each refresh: for them, half their lifetime is the window.
              and t.expires_at < now() + least(${options.withinMs} * interval '1 millisecond',
                    (t.expires_at - coalesce(i.last_refreshed_at, t.updated_at)) / 2)
              and (t.lease_owner is null or t.lease_expires_at < now())
              and (i.next_refresh_attempt_at is null or i.next_refresh_attempt_at < now())
              and t.integration_id <> all(${[...(options.exclude ?? [])]}::uuid[])
            order by t.expires_at
            limit ${options.limit}
            for update of t skip locked)
          update token_sets t set lease_owner = ${options.owner},
            lease_expires_at = now() + ${options.ttlMs} * interval '1 millisecond'
          from candidates c, integrations i
          where t.integration_id = c.integration_id and i.id = t.integration_id
          returning t.integration_id, t.access_token_ciphertext, t.refresh_token_ciphertext, t.token_type, t.scopes,
            t.expires_at, t.version::text, t.lease_expires_at, t.refresh_sent_version::text, t.refresh_sent_by, t.refresh_sent_at,
            ${integrationColumns(sql)}`;
        return rows.map((row) => ({ integrationId: row.integration_id, provider: row.provider, integration: toIntegration(row), lease: takenLeaseOf(row) }));
      }),

    /** Earliest expiry the proactive refresher will act on, for GetStatus. */
    nextExpiry: () =>
      guarded("read the next expiry", async (): Promise<Date | undefined> => {
        const [row] = await sql<{ next: Date | null }[]>`
          select min(t.expires_at) as next from token_sets t join integrations i on i.id = t.integration_id
          where i.status = 'active' and t.refresh_token_ciphertext is not null`;
        return row?.next ?? undefined;
      }),
  };
}
