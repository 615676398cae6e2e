/**
 * The PostgreSQL pool (postgres.js) and the translation of its failures into `BrokerError`s at
 * this edge. Connection attempts and probes are bounded, so a dead database shows up as
 * UNAVAILABLE and a failing `/readyz`, never as a hang.
 */
import postgres from "postgres";
import { BrokerError } from "../domain/errors.js";
import type { Logger } from "../observability/logger.js";

export interface Database {
  readonly sql: postgres.Sql;
  /** Round-trip time in ms; rejects with `database_unavailable` within 2 s when unreachable. */
  ping(): Promise<number>;
  close(timeoutSeconds?: number): Promise<void>;
}

const PING_TIMEOUT_MS = 2_000;
const UNAVAILABLE_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "CONNECT_TIMEOUT", "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED"]);

export function createDatabase(options: {
  url: string;
  poolSize?: number;
  logger: Logger;
  connectTimeoutSeconds?: number;
}): Database {
  const sql = postgres(options.url, {
    max: options.poolSize ?? 10,
    connect_timeout: options.connectTimeoutSeconds ?? 5,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    onnotice: (notice) => options.logger.debug({ notice: notice.message }, "postgres notice"),
  });
  return {
    sql,
    async ping() {
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          sql`select 1`,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
          }),
        ]);
      } catch (error) {
        throw toBrokerError(error, "ping the database");
      } finally {
        clearTimeout(timer);
      }
      return performance.now() - started;
    },
    close: (timeoutSeconds = 5) => sql.end({ timeout: timeoutSeconds }),
  };
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Maps a postgres.js / PostgreSQL failure to the broker's error; `what` names the operation. */
export function toBrokerError(error: unknown, what: string): BrokerError {
  if (error instanceof BrokerError) return error;
  const code = errorCode(error);
  const timedOut = error instanceof Error && /no answer within/.test(error.message);
  if (
    timedOut ||
    (code !== undefined &&
      (UNAVAILABLE_ERRNOS.has(code) || code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "53300" || code === "40001" || code === "40P01"))
  ) {
    return new BrokerError("database_unavailable", "the database is unavailable; retry later", {
      cause: error,
      retryAfterMs: 1_000,
      metadata: { operation: what },
    });
  }
  if (code === "23505") return new BrokerError("already_exists", `${what}: the record already exists`, { cause: error });
  if (code === "22P02" || code === "23514") {
    return new BrokerError("invalid_argument", `${what}: a value was not accepted by the database`, { cause: error });
  }
  return new BrokerError("internal", `${what} failed`, { cause: error });
}
