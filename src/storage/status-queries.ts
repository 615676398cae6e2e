/**
 * Cluster-wide numbers for GetStatus, read from PostgreSQL so every replica tells the same
 * story: refresh outcomes come from the audit trail (every replica's refreshes are in it), the
 * next proactive refresh from the same rule the refresher claims by.
 */
import type postgres from "postgres";
import { guarded } from "./database.js";

export interface RefreshOutcomeCount {
  readonly provider: string;
  readonly successes: number;
  readonly failures: number;
}

export function createStatusQueries(sql: postgres.Sql) {
  return {
    async refreshOutcomesSince(since: Date): Promise<RefreshOutcomeCount[]> {
      return guarded("count recent refreshes", async () => {
        const rows = await sql<{ provider: string; successes: string; failures: string }[]>`
          select provider,
                 count(*) filter (where outcome = 'success')::text as successes,
                 count(*) filter (where outcome <> 'success')::text as failures
          from audit_events
          where time >= ${since} and action in ('token.refreshed', 'token.refresh_failed')
          group by provider`;
        return rows.map((row) => ({ provider: row.provider, successes: Number(row.successes), failures: Number(row.failures) }));
      });
    },

    /** Per provider, when the proactive refresher will next find something to refresh. */
    async nextProactiveRefresh(windowMs: number): Promise<Map<string, Date>> {
      return guarded("read the next proactive refresh", async () => {
        const rows = await sql<{ provider: string; next: Date }[]>`
          select i.provider,
                 min(greatest(
                   t.expires_at - least(${windowMs} * interval '1 millisecond',
                                        (t.expires_at - coalesce(i.last_refreshed_at, t.updated_at)) / 2),
                   coalesce(i.next_refresh_attempt_at, '-infinity'::timestamptz))) as next
          from token_sets t join integrations i on i.id = t.integration_id
          where i.status = 'active' and t.refresh_token_ciphertext is not null
          group by i.provider`;
        return new Map(rows.map((row) => [row.provider, row.next]));
      });
    },
  };
}
