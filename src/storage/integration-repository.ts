/**
 * Integrations (the non-secret half of a grant) in PostgreSQL. Rows are `XRow` (snake_case)
 * here and domain types everywhere else; every query failure leaves as a `BrokerError`
 * (see database.ts).
 */
import type postgres from "postgres";
import type { IntegrationUpsert } from "../domain/authorization-ports.js";
import { BrokerError } from "../domain/errors.js";
import type { ExternalAccount, Integration, IntegrationStatus } from "../domain/types.js";
import { guarded } from "./database.js";
import { TOKEN_CHANNEL } from "./token-notifications.js";

export interface IntegrationRow {
  id: string;
  user_id: string;
  provider: string;
  external_account_id: string;
  external_account_name: string;
  external_account_attributes: Record<string, string> | null;
  granted_scopes: string[];
  status: IntegrationStatus;
  status_reason: string;
  refresh_failure_count: number;
  created_at: Date;
  updated_at: Date;
  last_refreshed_at: Date | null;
  last_used_at: Date | null;
  /** From the token set, when there is one. */
  access_token_expires_at: Date | null;
  has_refresh_token: boolean;
}

export interface IntegrationCount {
  readonly provider: string;
  readonly status: IntegrationStatus;
  readonly count: number;
  /** Of those, the ones whose token set holds no refresh token: they stop working at expiry. */
  readonly withoutRefreshToken: number;
}

export type IntegrationUpsertInput = IntegrationUpsert;

/** The one token kept, encrypted, until the provider confirms the grant revoked. */
export interface PendingRevocationInput {
  readonly tokenCiphertext: string;
  readonly hint: "access_token" | "refresh_token";
}

/** Position after the last item of a page: (created_at, id) of that item. */
export interface ListCursor {
  readonly createdAt: Date;
  readonly id: string;
}

export interface IntegrationListQuery {
  readonly userId?: string | undefined;
  readonly provider?: string | undefined;
  /** Only these providers (a service's policy); undefined means all. */
  readonly providers?: readonly string[] | undefined;
  /** Undefined means every status but `deleted`. */
  readonly status?: IntegrationStatus | readonly IntegrationStatus[] | undefined;
  readonly pageSize: number;
  readonly after?: ListCursor | undefined;
}

export interface IntegrationPage {
  readonly items: Integration[];
  /** Present when more items may follow. */
  readonly next: ListCursor | undefined;
}

export function toIntegration(row: IntegrationRow): Integration {
  return {
    id: row.id,
    userId: row.user_id,
    provider: row.provider,
    externalAccount: {
      id: row.external_account_id,
      name: row.external_account_name,
      attributes: row.external_account_attributes ?? {},
    },
    grantedScopes: row.granted_scopes,
    status: row.status,
    statusReason: row.status_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastRefreshedAt: row.last_refreshed_at,
    lastUsedAt: row.last_used_at,
    accessTokenExpiresAt: row.access_token_expires_at,
    refreshFailureCount: row.refresh_failure_count,
    hasRefreshToken: row.has_refresh_token,
  };
}

export type IntegrationRepository = ReturnType<typeof createIntegrationRepository>;

/**
 * The columns of an `IntegrationRow`: the integration `i` plus what its token set `t` says about
 * it (never a ciphertext). For any statement that has both at hand.
 */
export function integrationColumns(db: postgres.Sql | postgres.TransactionSql) {
  return db`
    i.id, i.user_id, i.provider, i.external_account_id, i.external_account_name,
    i.external_account_attributes, i.granted_scopes, i.status, i.status_reason,
    i.refresh_failure_count, i.created_at, i.updated_at, i.last_refreshed_at, i.last_used_at,
    t.expires_at as access_token_expires_at,
    coalesce(t.refresh_token_ciphertext is not null, false) as has_refresh_token`;
}

/** The integration columns plus what its token set says about it (never a ciphertext). */
export function selectIntegrations(db: postgres.Sql | postgres.TransactionSql, where: postgres.PendingQuery<postgres.Row[]>) {
  return db<IntegrationRow[]>`
    select ${integrationColumns(db)}
    from integrations i left join token_sets t on t.integration_id = i.id
    where ${where}`;
}

export function createIntegrationRepository(sql: postgres.Sql) {
  const live = (userId: string, provider: string) =>
    sql`i.user_id = ${userId} and i.provider = ${provider} and i.status <> 'deleted'`;

  return {
    /** Any integration, tombstones included; undefined when there is none with this id. */
    get: (id: string) =>
      guarded("read the integration", async () => {
        const [row] = await selectIntegrations(sql, sql`i.id = ${id}`);
        return row ? toIntegration(row) : undefined;
      }),

    /** The live integration of this user × provider × external account (the unique one). */
    findLive: (userId: string, provider: string, externalAccountId: string) =>
      guarded("find the integration", async () => {
        const [row] = await selectIntegrations(sql, sql`${live(userId, provider)} and i.external_account_id = ${externalAccountId}`);
        return row ? toIntegration(row) : undefined;
      }),

    /** The live integrations of one external account with these providers, any user's. */
    findLiveForAccount: (providers: readonly string[], externalAccountId: string) =>
      guarded("find the account's integrations", async () => {
        const rows = await selectIntegrations(
          sql,
          sql`i.provider = any(${[...providers]}) and i.external_account_id = ${externalAccountId} and i.status <> 'deleted'`,
        );
        return rows.map(toIntegration);
      }),

    /** The user's live integrations with one provider (optionally one account), newest first. */
    findForUser: (userId: string, provider: string, externalAccountId?: string) =>
      guarded("find the user's integrations", async () => {
        const account = externalAccountId === undefined ? sql`true` : sql`i.external_account_id = ${externalAccountId}`;
        const rows = await sql<IntegrationRow[]>`
          select * from (${selectIntegrations(sql, sql`${live(userId, provider)} and ${account}`)}) s
          order by created_at desc, id desc`;
        return rows.map(toIntegration);
      }),

    /**
     * Creates the integration with its token set, or updates the live one of the same user ×
     * provider × external account in place: same id, status active, reason and failure count
     * cleared, token version bumped. One transaction.
     *
     * The ciphertexts are bound to `input.id`, so the caller looks the live id up first
     * (`findLive`). When a live row exists under another id (a concurrent first connection won
     * the race), writing there would store undecryptable tokens: `already_exists` is thrown
     * instead, with the winner's id in `metadata.integration_id` (absent when the row vanished
     * meanwhile), so the caller encrypts for that id (or a new one) and retries.
     */
    upsertWithTokens: (input: IntegrationUpsertInput) =>
      guarded("store the integration", () =>
        sql.begin(async (tx) => {
          const account = input.externalAccount;
          const attributes = tx.json({ ...account.attributes });
          const scopes = [...input.grantedScopes];
          // `on conflict do nothing` waits for a concurrent insert of the same account to
          // commit, so the race ends here instead of in a unique violation. created_at is kept
          // to the millisecond: page cursors carry JavaScript dates (see `list`).
          const inserted = await tx`
            insert into integrations (id, user_id, provider, external_account_id, external_account_name,
              external_account_attributes, granted_scopes, created_at, updated_at, last_refreshed_at)
            values (${input.id}, ${input.userId}, ${input.provider}, ${account.id}, ${account.name},
              ${attributes}, ${scopes}, date_trunc('milliseconds', now()), now(), now())
            on conflict (user_id, provider, external_account_id) where status <> 'deleted' do nothing
            returning id`;
          const created = inserted.count === 1;
          if (!created) {
            const [existing] = await tx<{ id: string }[]>`
              select id from integrations
              where user_id = ${input.userId} and provider = ${input.provider}
                and external_account_id = ${account.id} and status <> 'deleted'
              for update`;
            if (existing?.id !== input.id) {
              throw new BrokerError("already_exists", "the account was connected concurrently; retry with the existing integration", {
                reason: "INTEGRATION_ID_CHANGED",
                metadata: existing ? { integration_id: existing.id } : {},
              });
            }
            // The row diff alone would call an unchanged reconnect a refresh (change feed, 0002).
            await tx`select set_config('oauth_broker.change', 'reauthorized', true)`;
            await tx`
              update integrations set external_account_name = ${account.name}, external_account_attributes = ${attributes},
                granted_scopes = ${scopes}, status = 'active', status_reason = '', refresh_failure_count = 0,
                next_refresh_attempt_at = null, updated_at = now(), last_refreshed_at = now()
              where id = ${input.id}`;
          }
          const t = input.tokens;
          // A null refresh token keeps the stored one (providers issue none on a repeated consent).
          await tx`
            insert into token_sets (integration_id, access_token_ciphertext, refresh_token_ciphertext, token_type, scopes, expires_at)
            values (${input.id}, ${t.accessTokenCiphertext}, ${t.refreshTokenCiphertext}, ${t.tokenType}, ${[...t.scopes]}, ${t.expiresAt})
            on conflict (integration_id) do update set
              access_token_ciphertext = excluded.access_token_ciphertext,
              refresh_token_ciphertext = coalesce(excluded.refresh_token_ciphertext, token_sets.refresh_token_ciphertext),
              token_type = excluded.token_type, scopes = excluded.scopes, expires_at = excluded.expires_at,
              version = token_sets.version + 1, updated_at = now()`;
          const [row] = await selectIntegrations(tx, tx`i.id = ${input.id}`);
          if (!row) throw new BrokerError("internal", "the stored integration could not be read back");
          return { integration: toIntegration(row), created };
        }),
      ),

    /**
     * Newest first, keyset-paginated on (created_at desc, id desc): rows inserted between pages
     * sort before the cursor, so later pages neither repeat nor skip a row that existed. Exact
     * because created_at is stored to the millisecond, the precision of the cursor's Date.
     */
    list: (query: IntegrationListQuery) =>
      guarded("list integrations", async (): Promise<IntegrationPage> => {
        const statuses = query.status === undefined ? undefined : typeof query.status === "string" ? [query.status] : [...query.status];
        const conditions = [
          query.userId === undefined ? sql`true` : sql`i.user_id = ${query.userId}`,
          query.provider === undefined ? sql`true` : sql`i.provider = ${query.provider}`,
          query.providers === undefined ? sql`true` : sql`i.provider = any(${[...query.providers]}::text[])`,
          statuses === undefined ? sql`i.status <> 'deleted'` : sql`i.status = any(${statuses}::text[])`,
          query.after === undefined ? sql`true` : sql`(i.created_at, i.id) < (${query.after.createdAt}::timestamptz, ${query.after.id}::uuid)`,
        ];
        const where = conditions.reduce((acc, condition) => sql`${acc} and ${condition}`);
        const pageSize = Math.max(1, Math.floor(query.pageSize));
        const rows = await sql<IntegrationRow[]>`
          select * from (${selectIntegrations(sql, where)}) s order by created_at desc, id desc limit ${pageSize + 1}`;
        const items = rows.slice(0, pageSize).map(toIntegration);
        const last = items.at(-1);
        return { items, next: rows.length > pageSize && last ? { createdAt: last.createdAt, id: last.id } : undefined };
      }),

    /** Every (provider, status) pair present, tombstones included, for GetStatus and metrics. */
    countByStatus: () =>
      guarded("count integrations", async () => {
        const rows = await sql<{ provider: string; status: IntegrationStatus; count: string; without_refresh_token: string }[]>`
          select i.provider, i.status, count(*)::text as count,
                 count(*) filter (where t.integration_id is not null and t.refresh_token_ciphertext is null)::text as without_refresh_token
          from integrations i left join token_sets t on t.integration_id = i.id
          group by i.provider, i.status order by i.provider, i.status`;
        return rows.map(
          (row): IntegrationCount => ({
            provider: row.provider,
            status: row.status,
            count: Number(row.count),
            withoutRefreshToken: Number(row.without_refresh_token),
          }),
        );
      }),

    /**
     * The grant is dead (invalid_grant): no further provider calls until the user reconnects.
     * Only an active integration changes (a tombstone stays one).
     */
    markNeedsReauth: (id: string, reason: string) =>
      guarded("mark the integration for re-authorization", async () => {
        await sql`update integrations set status = 'needs_reauth', status_reason = ${reason}, updated_at = now()
                  where id = ${id} and status = 'active'`;
      }),

    /** Counts a failed refresh; the proactive refresher leaves it alone until `nextAttemptAt`. */
    recordRefreshFailure: (id: string, reason: string, nextAttemptAt: Date) =>
      guarded("record the refresh failure", async () => {
        await sql`update integrations set refresh_failure_count = refresh_failure_count + 1, status_reason = ${reason},
                    next_refresh_attempt_at = ${nextAttemptAt}, updated_at = now()
                  where id = ${id} and status <> 'deleted'`;
      }),

    /** Cheap on the hot path: writes only when the stored value is more than a minute older. */
    touchLastUsed: (id: string, at: Date) =>
      guarded("record the last use", async () => {
        await sql`update integrations set last_used_at = ${at}
                  where id = ${id} and (last_used_at is null or last_used_at < ${at}::timestamptz - interval '1 minute')`;
      }),

    /**
     * New account details and scopes from a sync. False when the integration is gone or the
     * token now belongs to another external account (which is not this integration any more).
     */
    updateAccount: (id: string, account: ExternalAccount, scopes: readonly string[]) =>
      guarded("update the account details", async () => {
        const rows = await sql`update integrations set external_account_name = ${account.name},
                                 external_account_attributes = ${sql.json({ ...account.attributes })},
                                 granted_scopes = ${[...scopes]}, updated_at = now()
                               where id = ${id} and external_account_id = ${account.id} and status <> 'deleted'`;
        return rows.count === 1;
      }),

    /**
     * Erases the token set (the ciphertexts) and leaves a tombstone, in one transaction. With
     * `queueRevocation`, the token to revoke (the refresh token, else the access token; RFC 7009
     * §2.1) is read under the row lock and kept in `pending_revocations` in the same transaction,
     * so a crash between deleting and revoking never forgets the revocation, and a refresh that
     * lands meanwhile cannot leave a newer token unrevoked. The row is born claimed by the caller,
     * who attempts the revocation at once; the retry job takes it only if that attempt fails.
     * Other replicas drop their cached copies on commit. Idempotent: a second call reports
     * `alreadyDeleted`. Undefined when there is no such id.
     */
    markDeleted: (id: string, reason: string, options: { queueRevocation?: boolean; claimMs?: number } = {}) =>
      guarded("delete the integration", () =>
        sql.begin(async (tx) => {
          const [current] = await tx<{ status: IntegrationStatus; provider: string }[]>`
            select status, provider from integrations where id = ${id} for update`;
          if (!current) return undefined;
          const alreadyDeleted = current.status === "deleted";
          let revocation: PendingRevocationInput | undefined;
          if (!alreadyDeleted) {
            if (options.queueRevocation) {
              const [tokens] = await tx<{ access_token_ciphertext: string; refresh_token_ciphertext: string | null }[]>`
                select access_token_ciphertext, refresh_token_ciphertext from token_sets where integration_id = ${id} for update`;
              revocation = tokens
                ? tokens.refresh_token_ciphertext !== null
                  ? { tokenCiphertext: tokens.refresh_token_ciphertext, hint: "refresh_token" }
                  : { tokenCiphertext: tokens.access_token_ciphertext, hint: "access_token" }
                : undefined;
            }
            if (revocation) {
              await tx`
                insert into pending_revocations (integration_id, provider, token_ciphertext, token_type_hint, next_attempt_at)
                values (${id}, ${current.provider}, ${revocation.tokenCiphertext}, ${revocation.hint},
                        now() + ${options.claimMs ?? 120_000} * interval '1 millisecond')
                on conflict (integration_id) do nothing`;
            }
            await tx`delete from token_sets where integration_id = ${id}`;
            await tx`update integrations set status = 'deleted', status_reason = ${reason}, deleted_at = now(),
                       next_refresh_attempt_at = null, updated_at = now()
                     where id = ${id}`;
            await tx`select pg_notify(${TOKEN_CHANNEL}, ${`${id}:0`})`;
          }
          const [row] = await selectIntegrations(tx, tx`i.id = ${id}`);
          return row ? { integration: toIntegration(row), alreadyDeleted, revocation } : undefined;
        }),
      ),

    /**
     * Claims a live integration for one sync pass: false when another replica (or an earlier
     * pass) holds the claim. The claim lapses by itself, so a replica that dies frees it.
     */
    claimForSync: (id: string, ttlMs: number) =>
      guarded("claim the integration for sync", async () => {
        const rows = await sql`
          update integrations set sync_claimed_until = now() + ${ttlMs} * interval '1 millisecond'
          where id = ${id} and status <> 'deleted' and (sync_claimed_until is null or sync_claimed_until < now())`;
        return rows.count === 1;
      }),

    /** Ends a sync pass: records when the integration was last reconciled and frees the claim. */
    finishSync: (id: string) =>
      guarded("record the sync", async () => {
        await sql`update integrations set synced_at = now(), sync_claimed_until = null where id = ${id}`;
      }),

    /**
     * Erases the refresh tokens of integrations that have needed re-authorization since before
     * `before`: a grant the provider refused is not kept around for ever. Returns how many.
     */
    eraseDeadRefreshTokens: (before: Date, limit: number) =>
      guarded("erase dead refresh tokens", async () => {
        const rows = await sql`
          update token_sets set refresh_token_ciphertext = null, updated_at = now()
          where integration_id in (
            select t.integration_id from token_sets t join integrations i on i.id = t.integration_id
            where i.status = 'needs_reauth' and i.updated_at < ${before} and t.refresh_token_ciphertext is not null
            limit ${limit} for update of t, i skip locked)`;
        return rows.count;
      }),

    /** Removes up to `limit` tombstones deleted before `olderThan`; returns how many. */
    purgeTombstones: (olderThan: Date, limit: number) =>
      guarded("purge deleted integrations", async () => {
        const rows = await sql`
          delete from integrations where id in (
            select id from integrations where status = 'deleted' and deleted_at < ${olderThan}
            order by deleted_at limit ${limit} for update skip locked)`;
        return rows.count;
      }),
  };
}
