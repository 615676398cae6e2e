/**
 * The PostgreSQL pool (postgres.js) and the translation of its failures into `BrokerError`s at
 * this edge. Connection attempts and probes are bounded, so a dead database shows up as
 * UNAVAILABLE and a failing `/readyz`, never as a hang.
 */
import { Socket } from "node:net";
import postgres from "postgres";
import { BrokerError } from "../domain/errors.js";
import type { Logger } from "../observability/logger.js";

export interface Database {
  readonly sql: postgres.Sql;
  /** Round-trip time in ms; rejects with `database_unavailable` within `timeoutMs` (2 s) when unreachable. */
  ping(timeoutMs?: number): Promise<number>;
  /** Lets running queries finish for up to `timeoutSeconds` (5), then closes every connection. */
  close(timeoutSeconds?: number): Promise<void>;
}

export interface DatabaseOptions {
  readonly url: string;
  readonly poolSize?: number | undefined;
  readonly logger: Logger;
  /** Bound on establishing one connection (TCP, TLS, authentication); default 5 s. */
  readonly connectTimeoutSeconds?: number | undefined;
}

const PING_TIMEOUT_MS = 2_000;
const RETRY_AFTER_MS = 1_000;

export function createDatabase(options: DatabaseOptions): Database {
  const sql = postgres(options.url, {
    ...(plainTcp(options.url) ? { socket: openSocket } : {}),
    max: options.poolSize ?? 10,
    connect_timeout: options.connectTimeoutSeconds ?? 5,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    // TCP keepalive: a peer that vanished without a FIN is noticed instead of awaited forever.
    keep_alive: 30,
    // postgres.js waits `3^n / 100` s (up to 20 s) before reconnecting after its n-th failed
    // attempt in a row, pool-wide, and a query handed to a closed connection waits all of it:
    // under load an outage made every call wait 15-20 s, and the restore went unnoticed as long.
    backoff: reconnectDelaySeconds,
    connection: { application_name: "oauth-broker" },
    onnotice: (notice) => options.logger.debug({ notice: notice.message }, "postgres notice"),
  });
  return {
    sql,
    async ping(timeoutMs = PING_TIMEOUT_MS) {
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          sql`select 1`,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new PingTimeout(timeoutMs)), timeoutMs);
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

/**
 * postgres.js 3.4.9 loses a query handed to a connection between its socket's `error` and the
 * later `close` (with `hadError` set it rejects nothing that was sent meanwhile): the query never
 * settles, or settles with the empty result of the next connection's ReadyForQuery. A socket
 * that emits `close` right after `error` leaves no such window. Pinned by
 * test/integration/storage-database.test.ts ("terminated backend").
 */
class ClosingSocket extends Socket {
  #closed = false;

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === "close" || (event === "error" && this.#closed)) {
      if (this.#closed) return false;
      this.#closed = true;
      return super.emit("close", ...args);
    }
    if (event === "error") {
      const handled = super.emit("error", ...args);
      if (!this.#closed) {
        this.#closed = true;
        super.emit("close", true);
      }
      return handled;
    }
    return super.emit(event, ...args);
  }
}

/** postgres.js `socket` option: it writes at once; the socket buffers until connected. */
function openSocket(options: { host: string[]; port: number[]; path: string | false }): Socket {
  const socket = new ClosingSocket();
  if (options.path) socket.connect(options.path);
  else socket.connect(options.port[0] ?? 5432, options.host[0] ?? "localhost");
  return socket;
}

/** The custom socket covers one host over plain TCP (or a unix socket); TLS and multi-host keep the default. */
function plainTcp(url: string): boolean {
  try {
    const parsed = new URL(url);
    const ssl = parsed.searchParams.get("sslmode") ?? parsed.searchParams.get("ssl");
    const tls = (ssl !== null && ssl !== "disable" && ssl !== "false") || parsed.searchParams.has("sslrootcert");
    return !tls && !parsed.host.includes(",");
  } catch {
    return false;
  }
}

/** Reconnect delay after `retries` failed attempts: from 50 ms, doubling, at most 500 ms. */
export function reconnectDelaySeconds(retries: number): number {
  return Math.min(0.05 * 2 ** retries, 0.5) * (0.5 + Math.random() / 2);
}

class PingTimeout extends Error {
  override readonly name = "PingTimeout";
  constructor(ms: number) {
    super(`the database did not answer within ${ms} ms`);
  }
}

/** Socket errors and postgres.js connection errors: the server is not there (or went away). */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
]);

/**
 * SQLSTATEs (PostgreSQL Appendix A) meaning "not now": class 08 connection exceptions, 53
 * insufficient resources (too many connections, disk full), 57P01..57P03 shutdown / crash /
 * still starting, and 40001 / 40P01 (serialization failure, deadlock), which a retry resolves.
 */
function unavailableState(code: string): boolean {
  return code.startsWith("08") || code.startsWith("53") || ["57P01", "57P02", "57P03", "40001", "40P01"].includes(code);
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Maps a postgres.js / PostgreSQL failure to the broker's error; `what` names the operation
 * ("store the integration"). Messages never carry the server's text (it may quote values);
 * the original error is the `cause`, for the log.
 */
export function toBrokerError(error: unknown, what: string): BrokerError {
  if (error instanceof BrokerError) return error;
  const code = errorCode(error);
  if (error instanceof PingTimeout || (code !== undefined && (UNREACHABLE.has(code) || unavailableState(code)))) {
    return new BrokerError("database_unavailable", `could not ${what}: the database is unavailable; retry later`, {
      cause: error,
      retryAfterMs: RETRY_AFTER_MS,
      metadata: { operation: what },
    });
  }
  // 57014: statement timeout or cancellation.
  if (code === "57014") return new BrokerError("deadline_exceeded", `could not ${what} in time`, { cause: error });
  if (code === "23505") return new BrokerError("already_exists", `could not ${what}: the record already exists`, { cause: error });
  // 23514 check violation; class 22 data exceptions (22P02 malformed uuid, 22001 too long, ...).
  if (code === "23514" || code?.startsWith("22")) {
    return new BrokerError("invalid_argument", `could not ${what}: a value was not accepted`, { cause: error });
  }
  return new BrokerError("internal", `could not ${what}`, { cause: error });
}

/** Runs one storage operation, turning its failure into the broker's error (`toBrokerError`). */
export async function guarded<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw toBrokerError(error, what);
  }
}
