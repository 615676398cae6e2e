/**
 * The integration change feed (WatchIntegrations). Rows are written by the `integrations`
 * trigger of migration 0002, in the transaction of the change, with ids in commit order; this
 * module reads them after a cursor, wakes watchers through LISTEN/NOTIFY, and purges old ones
 * while remembering how far it purged, so a cursor from before the horizon is refused instead
 * of silently missing changes.
 */
import type postgres from "postgres";
import type { ChangeFeedStore, ChangeFilter, ChangePage, IntegrationChangeType } from "../domain/change-feed.js";
import type { Logger } from "../observability/logger.js";
import { guarded, toBrokerError } from "./database.js";
import { toIntegration, type IntegrationRow } from "./integration-repository.js";

export const INTEGRATION_EVENTS_CHANNEL = "oauth_broker_integration_events";

interface EventRow extends IntegrationRow {
  event_id: string;
  type: IntegrationChangeType;
  time: Date;
}

type ChangeQuery = ChangeFilter;

export interface IntegrationEventMaintenance {
  purgeOlderThan(before: Date, limit: number): Promise<number>;
  close(): Promise<void>;
}

export function createIntegrationEventStore(sql: postgres.Sql, logger: Logger): ChangeFeedStore & IntegrationEventMaintenance {
  const wakers = new Set<() => void>();
  let listening: Promise<postgres.ListenMeta> | undefined;

  return {
    /**
     * Changes after `after`, oldest first, each with the integration as it is now (a purged
     * tombstone comes back as a bare deleted integration).
     */
    after: (query: ChangeQuery & { after: number; limit: number }) =>
      guarded("read integration changes", async (): Promise<ChangePage> => {
        const conditions = [
          sql`e.id > ${query.after}`,
          query.userId === undefined ? sql`true` : sql`e.user_id = ${query.userId}`,
          query.provider === undefined ? sql`true` : sql`e.provider = ${query.provider}`,
          query.providers === undefined ? sql`true` : sql`e.provider = any(${[...query.providers]}::text[])`,
        ];
        const where = conditions.reduce((acc, condition) => sql`${acc} and ${condition}`);
        // One statement, one snapshot: ids commit in order, so every event up to the newest id
        // this snapshot sees is visible to it, and the reader may move past all of them — even
        // when none matches its filter (the lateral join still yields the positions row).
        const rows = await sql<(Partial<EventRow> & { newest: string; horizon: string })[]>`
          with positions as (
            select (select coalesce(max(id), 0) from integration_events) as newest,
                   (select coalesce(max(purged_through), 0) from integration_events_horizon) as horizon)
          select positions.newest::text as newest, positions.horizon::text as horizon, page.*
          from positions left join lateral (
            select e.id::text as event_id, e.type, e.time,
                   e.integration_id as id, e.user_id, e.provider,
                   coalesce(i.external_account_id, '') as external_account_id,
                   coalesce(i.external_account_name, '') as external_account_name,
                   i.external_account_attributes,
                   coalesce(i.granted_scopes, '{}') as granted_scopes,
                   coalesce(i.status, 'deleted') as status,
                   coalesce(i.status_reason, '') as status_reason,
                   coalesce(i.refresh_failure_count, 0) as refresh_failure_count,
                   coalesce(i.created_at, e.time) as created_at,
                   coalesce(i.updated_at, e.time) as updated_at,
                   i.last_refreshed_at, i.last_used_at,
                   t.expires_at as access_token_expires_at,
                   coalesce(t.refresh_token_ciphertext is not null, false) as has_refresh_token
            from integration_events e
              left join integrations i on i.id = e.integration_id
              left join token_sets t on t.integration_id = e.integration_id
            where ${where} and e.id <= positions.newest
            order by e.id
            limit ${Math.max(1, query.limit)}) page on true
          order by page.event_id::bigint nulls first`;
        const found = rows.filter((row): row is EventRow & { newest: string; horizon: string } => row.event_id !== null && row.event_id !== undefined);
        const changes = found.map((row) => ({ cursor: Number(row.event_id), type: row.type, time: row.time, integration: toIntegration(row) }));
        const full = found.length >= Math.max(1, query.limit);
        const newest = Number(rows[0]?.newest ?? 0);
        return {
          changes,
          scannedThrough: full ? (changes.at(-1)?.cursor ?? query.after) : newest,
          horizon: Number(rows[0]?.horizon ?? 0),
        };
      }),

    /** The newest event id (0 when there is none): where a watch without a cursor starts. */
    latest: () =>
      guarded("read the change feed position", async () => {
        const [row] = await sql<{ id: string }[]>`
          select greatest((select coalesce(max(id), 0) from integration_events),
                          (select coalesce(max(purged_through), 0) from integration_events_horizon))::text as id`;
        return Number(row?.id ?? 0);
      }),

    /** Events up to this id were purged: cursors before it cannot resume. */
    horizon: () =>
      guarded("read the change feed horizon", async () => {
        const [row] = await sql<{ purged_through: string }[]>`select purged_through::text from integration_events_horizon`;
        return Number(row?.purged_through ?? 0);
      }),

    /** Deletes up to `limit` events older than `before`, moving the horizon; returns how many. */
    purgeOlderThan: (before: Date, limit: number) =>
      guarded("purge old integration changes", () =>
        sql.begin(async (tx) => {
          const [row] = await tx<{ deleted: string; through: string | null }[]>`
            with gone as (
              delete from integration_events where id in (
                select id from integration_events where time < ${before} order by id limit ${limit})
              returning id)
            select count(*)::text as deleted, max(id)::text as through from gone`;
          const through = row?.through;
          if (through !== null && through !== undefined) {
            await tx`
              insert into integration_events_horizon (id, purged_through) values (true, ${through}::bigint)
              on conflict (id) do update set purged_through = greatest(integration_events_horizon.purged_through, excluded.purged_through)`;
          }
          return Number(row?.deleted ?? 0);
        }),
      ),

    /**
     * Calls `wake` whenever an event commits on any replica. Watchers also poll, so a
     * notification lost while the listening connection reconnects delays, never loses, a change.
     */
    async subscribe(wake: () => void): Promise<() => void> {
      listening ??= sql.listen(
        INTEGRATION_EVENTS_CHANNEL,
        () => {
          for (const w of wakers) w();
        },
        () => logger.debug({ channel: INTEGRATION_EVENTS_CHANNEL }, "listening for integration changes"),
      );
      try {
        await listening;
      } catch (error) {
        listening = undefined;
        throw toBrokerError(error, "listen for integration changes");
      }
      wakers.add(wake);
      return () => wakers.delete(wake);
    },

    async close(): Promise<void> {
      wakers.clear();
      const meta = await listening?.catch(() => undefined);
      listening = undefined;
      await meta?.unlisten().catch(() => undefined);
    },
  };
}

