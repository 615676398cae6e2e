/**
 * Integrations and their token sets in PostgreSQL. Rows are `XRow` (snake_case) here and domain
 * types everywhere else; every query failure leaves as a `BrokerError` (see database.ts).
 */
import type postgres from "postgres";
import type { IntegrationUpsert } from "../domain/authorization-ports.js";
import { BrokerError } from "../domain/errors.js";
import type { ExternalAccount, Integration, IntegrationStatus } from "../domain/types.js";
import { toBrokerError } from "./database.js";

export interface IntegrationRow {
  id: string;
  user_id: string;
  provider: string;
  external_account_id: string;
  external_account_name: string;
  external_account_attributes: Record<string, string>;
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
}

export type IntegrationUpsertInput = IntegrationUpsert;

export interface ListCursor {
  readonly createdAt: Date;
  readonly id: string;
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

export function createIntegrationRepository(sql: postgres.Sql) {
  /** The integration columns plus what the token set says about it (never a ciphertext). */
  const select = (where: postgres.PendingQuery<postgres.Row[]>) => sql<IntegrationRow[]>`
    select i.id, i.user_id, i.provider, i.external_account_id, i.external_account_name,
           i.external_account_attributes, i.granted_scopes, i.status, i.status_reason,
           i.refresh_failure_count, i.created_at, i.updated_at, i.last_refreshed_at, i.last_used_at,
           t.expires_at as access_token_expires_at,
           (t.refresh_token_ciphertext is not null) as has_refresh_token
    from integrations i left join token_sets t on t.integration_id = i.id
    where ${where}`;

  async function guarded<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw toBrokerError(error, what);
    }
  }

  const get = (id: string) =>
    guarded("read the integration", async () => {
      const [row] = await select(sql`i.id = ${id}`);
      return row ? toIntegration(row) : undefined;
    });

  return {
    get,

    findLive: (userId: string, provider: string, externalAccountId: string) =>
      guarded("find the integration", async () => {
        const [row] = await select(
          sql`i.user_id = ${userId} and i.provider = ${provider} and i.external_account_id = ${externalAccountId} and i.status <> 'deleted'`,
        );
        return row ? toIntegration(row) : undefined;
      }),

    findForUser: (userId: string, provider: string, externalAccountId?: string) =>
      guarded("find the user's integrations", async () => {
        const account = externalAccountId === undefined ? sql`true` : sql`i.external_account_id = ${externalAccountId}`;
        const rows = await sql<IntegrationRow[]>`
          select * from (${select(sql`i.user_id = ${userId} and i.provider = ${provider} and i.status <> 'deleted' and ${account}`)}) s
          order by created_at desc, id desc`;
        return rows.map(toIntegration);
      }),

    /**
     * Creates the integration with its token set, or updates the live one of the same user ×
     * provider × external account in place (keeping its id). One transaction. When a live row
     * exists under another id (a concurrent first connection), the ciphertexts — bound to
     * `input.id` — would not decrypt there: `already_exists` carries the existing id so the
     * caller re-encrypts for it and retries.
     */
    upsertWithTokens: (input: IntegrationUpsertInput) =>
      guarded("store the integration", () =>
        sql.begin(async (tx) => {
          const [existing] = await tx<{ id: string }[]>`
            select id from integrations
            where user_id = ${input.userId} and provider = ${input.provider}
              and external_account_id = ${input.externalAccount.id} and status <> 'deleted'
            for update`;
          if (existing && existing.id !== input.id) {
            throw new BrokerError("already_exists", "the account was connected concurrently; retry with the existing integration", {
              metadata: { integration_id: existing.id },
            });
          }
          const account = input.externalAccount;
          const attributes = tx.json({ ...account.attributes });
          if (existing) {
            await tx`
              update integrations set external_account_name = ${account.name}, external_account_attributes = ${attributes},
                granted_scopes = ${[...input.grantedScopes]}, status = 'active', status_reason = '',
                refresh_failure_count = 0, next_refresh_attempt_at = null, updated_at = now(), last_refreshed_at = now()
              where id = ${input.id}`;
          } else {
            await tx`
              insert into integrations (id, user_id, provider, external_account_id, external_account_name,
                external_account_attributes, granted_scopes, last_refreshed_at)
              values (${input.id}, ${input.userId}, ${input.provider}, ${account.id}, ${account.name},
                ${attributes}, ${[...input.grantedScopes]}, now())`;
          }
          const t = input.tokens;
          await tx`
            insert into token_sets (integration_id, access_token_ciphertext, refresh_token_ciphertext, token_type, scopes, expires_at)
            values (${input.id}, ${t.accessTokenCiphertext}, ${t.refreshTokenCiphertext}, ${t.tokenType}, ${[...t.scopes]}, ${t.expiresAt})
            on conflict (integration_id) do update set
              access_token_ciphertext = excluded.access_token_ciphertext,
              refresh_token_ciphertext = coalesce(excluded.refresh_token_ciphertext, token_sets.refresh_token_ciphertext),
              token_type = excluded.token_type, scopes = excluded.scopes, expires_at = excluded.expires_at,
              version = token_sets.version + 1, updated_at = now()`;
          const [row] = await tx<IntegrationRow[]>`
            select i.*, t.expires_at as access_token_expires_at, (t.refresh_token_ciphertext is not null) as has_refresh_token
            from integrations i join token_sets t on t.integration_id = i.id where i.id = ${input.id}`;
          if (!row) throw new BrokerError("internal", "the stored integration could not be read back");
          return { integration: toIntegration(row), created: !existing };
        }),
      ),

    /** Newest first; keyset pagination on (created_at, id) stays stable under concurrent inserts. */
    list: (query: {
      userId?: string | undefined;
      provider?: string | undefined;
      /** Only these providers (a service's policy); undefined means all. */
      providers?: readonly string[] | undefined;
      status?: IntegrationStatus | undefined;
      pageSize: number;
      after?: ListCursor | undefined;
    }) =>
      guarded("list integrations", async () => {
        const conditions = [
          query.userId === undefined ? sql`true` : sql`i.user_id = ${query.userId}`,
          query.provider === undefined ? sql`true` : sql`i.provider = ${query.provider}`,
          query.providers === undefined ? sql`true` : sql`i.provider = any(${[...query.providers]})`,
          query.status === undefined ? sql`i.status <> 'deleted'` : sql`i.status = ${query.status}`,
          query.after === undefined ? sql`true` : sql`(i.created_at, i.id) < (${query.after.createdAt}, ${query.after.id})`,
        ];
        const where = conditions.reduce((acc, condition) => sql`${acc} and ${condition}`);
        const rows = await sql<IntegrationRow[]>`
          select * from (${select(where)}) s order by created_at desc, id desc limit ${query.pageSize + 1}`;
        const items = rows.slice(0, query.pageSize).map(toIntegration);
        const last = items.at(-1);
        return { items, next: rows.length > query.pageSize && last ? { createdAt: last.createdAt, id: last.id } : undefined };
      }),

    countByStatus: () =>
      guarded("count integrations", async () => {
        const rows = await sql<{ provider: string; status: IntegrationStatus; count: string }[]>`
          select provider, status, count(*)::text as count from integrations group by provider, status order by provider, status`;
        return rows.map((row): IntegrationCount => ({ provider: row.provider, status: row.status, count: Number(row.count) }));
      }),

    /** The grant is dead (invalid_grant): no further provider calls until the user reconnects. */
    markNeedsReauth: (id: string, reason: string) =>
      guarded("mark the integration for re-authorization", async () => {
        await sql`update integrations set status = 'needs_reauth', status_reason = ${reason}, updated_at = now()
                  where id = ${id} and status = 'active'`;
      }),

    recordRefreshFailure: (id: string, reason: string, nextAttemptAt: Date) =>
      guarded("record the refresh failure", async () => {
        await sql`update integrations set refresh_failure_count = refresh_failure_count + 1, status_reason = ${reason},
                    next_refresh_attempt_at = ${nextAttemptAt}, updated_at = now()
                  where id = ${id}`;
      }),

    touchLastUsed: (id: string, at: Date) =>
      guarded("record the last use", async () => {
        await sql`update integrations set last_used_at = ${at}
                  where id = ${id} and (last_used_at is null or last_used_at < ${at} - interval '1 minute')`;
      }),

    updateAccount: (id: string, account: ExternalAccount, scopes: readonly string[]) =>
      guarded("update the account details", async () => {
        await sql`update integrations set external_account_name = ${account.name},
                    external_account_attributes = ${sql.json({ ...account.attributes })},
                    granted_scopes = ${[...scopes]}, updated_at = now()
                  where id = ${id}`;
      }),

    /** Erases the token set and leaves a tombstone, in one transaction; idempotent. */
    markDeleted: (id: string, reason: string) =>
      guarded("delete the integration", () =>
        sql.begin(async (tx) => {
          const [current] = await tx<{ status: IntegrationStatus }[]>`select status from integrations where id = ${id} for update`;
          if (!current) return undefined;
          const alreadyDeleted = current.status === "deleted";
          if (!alreadyDeleted) {
            await tx`delete from token_sets where integration_id = ${id}`;
            await tx`update integrations set status = 'deleted', status_reason = ${reason}, deleted_at = now(), updated_at = now()
                     where id = ${id}`;
          }
          const [row] = await tx<IntegrationRow[]>`
            select i.*, null::timestamptz as access_token_expires_at, false as has_refresh_token from integrations i where i.id = ${id}`;
          return row ? { integration: toIntegration(row), alreadyDeleted } : undefined;
        }),
      ),

    purgeTombstones: (olderThan: Date, limit: number) =>
      guarded("purge deleted integrations", async () => {
        const rows = await sql`
          delete from integrations where id in (
            select id from integrations where status = 'deleted' and deleted_at < ${olderThan} limit ${limit})
          returning id`;
        return rows.count;
      }),
  };
}
