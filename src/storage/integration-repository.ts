/**
 * Integrations and their token sets in PostgreSQL. Rows are `XRow` (snake_case) here and domain
 * types everywhere else; every query failure leaves as a `BrokerError` (see database.ts).
 */
import type postgres from "postgres";
import type { IntegrationStatus } from "../domain/types.js";
import { toBrokerError } from "./database.js";

export interface IntegrationCount {
  readonly provider: string;
  readonly status: IntegrationStatus;
  readonly count: number;
}

export function createIntegrationRepository(sql: postgres.Sql) {
  return {
    async countByStatus(): Promise<IntegrationCount[]> {
      try {
        const rows = await sql<{ provider: string; status: IntegrationStatus; count: string }[]>`
          select provider, status, count(*)::text as count from integrations group by provider, status order by provider, status`;
        return rows.map((row) => ({ provider: row.provider, status: row.status, count: Number(row.count) }));
      } catch (error) {
        throw toBrokerError(error, "count integrations");
      }
    },
  };
}
