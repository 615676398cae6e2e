/**
 * The audit trail's writer: append-only rows in `audit_events`, each hash-chained to the one
 * before (audit-hash.ts), with a gap-free `sequence` shared by every replica.
 *
 * Ordering across replicas comes from one transaction-scoped advisory lock: a writer takes it,
 * reads the last (sequence, hash) — or the retention anchor when the table is empty — and inserts
 * after it. The lock is released at commit, after the rows became visible, so the next writer
 * always reads the true tip.
 *
 * `GetAccessToken` records an event per token handed out, so writes are grouped: `record()`
 * enqueues the event and resolves once the transaction holding its batch has committed. A batch is
 * written when `maxBatchSize` events wait or `maxDelayMs` after its first event, one transaction
 * and one lock acquisition per batch; while a batch is being written the next one fills up and is
 * written as soon as it ends. That wait is what groups events under load, so by default a batch
 * waits for no company (only for the events raised in the same turn of the event loop): a fixed
 * delay added its full length to every call of a lightly loaded broker
 * (bench/cold-path.ts). If a batch fails, every `record()` in it rejects: the operation that
 * wanted the record fails rather than going unrecorded.
 */
import type postgres from "postgres";
import { BrokerError } from "../domain/errors.js";
import { withinDatabaseBound } from "../domain/database-bound.js";
import { toBrokerError } from "./database.js";
import { systemClock, type AuditEventInput, type AuditLog, type Clock } from "../domain/ports.js";
import type { Logger } from "../observability/logger.js";
import { normalizeAuditEvent, type NormalizedAuditEvent } from "./audit-event-input.js";
import { canonicalAuditEvent, chainHash, GENESIS_HASH } from "./audit-hash.js";

/** Key of the advisory lock that serializes chain appends across replicas ("oaaudit1"). */
export const AUDIT_APPEND_LOCK_KEY = "8025803167774635057";

export const AUDIT_WRITE_FAILED_MESSAGE = "the audit record could not be written; the operation was not performed";

export interface PostgresAuditLogOptions {
  readonly sql: postgres.Sql;
  readonly logger: Logger;
  readonly clock?: Clock | undefined;
  /** Called once per failed batch with the number of events lost (for a metric). */
  readonly onWriteFailure?: ((failedEvents: number) => void) | undefined;
  /** Events per transaction; default 256. */
  readonly maxBatchSize?: number | undefined;
  /** How long the first event of a batch waits for company; default 0 (the next turn of the event loop). */
  readonly maxDelayMs?: number | undefined;
  /** Bound on waiting for the append lock, so a stuck writer fails operations instead of hanging them; default 5 s. */
  readonly lockTimeoutMs?: number | undefined;
  /**
   * Bound on one batch's whole transaction (pool acquisition included); default the lock bound
   * plus 2 s. A batch past it fails its events, and the writer goes on with the next batch: a
   * transaction whose connection was lost in a cut must not hold every later event back.
   */
  readonly batchTimeoutMs?: number | undefined;
}

export interface PostgresAuditLog extends AuditLog {
  /** Resolves when every event recorded so far has been written or has failed. */
  flush(): Promise<void>;
  /** Flushes, then refuses further events. */
  close(): Promise<void>;
}

interface Pending {
  readonly event: NormalizedAuditEvent;
  readonly time: Date;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

interface ChainTip {
  readonly sequence: string;
  readonly hash: string;
}

/**
 * Opens the batch's transaction, takes the append lock and returns the chain's tip: the last
 * event's (sequence, hash); the anchor when retention emptied the table; genesis otherwise. The
 * statements go out together (postgres.js pipelines the queries of a reserved connection issued
 * without waiting) and PostgreSQL runs them in order, so the tip is read after the lock is held.
 */
async function beginAndReadTip(connection: postgres.ReservedSql, lockTimeout: string): Promise<ChainTip> {
  const [, , , [last]] = await Promise.all([
    connection`begin`,
    connection`select set_config('lock_timeout', ${lockTimeout}, true)`,
    connection`select pg_advisory_xact_lock(${AUDIT_APPEND_LOCK_KEY}::bigint)`,
    connection<ChainTip[]>`select sequence::text as sequence, hash from audit_events order by audit_events.sequence desc limit 1`,
  ]);
  if (last) return last;
  const [anchor] = await connection<ChainTip[]>`select sequence::text as sequence, hash from audit_anchor`;
  return anchor ?? { sequence: "0", hash: GENESIS_HASH };
}

/**
 * What the operations of a failed batch fail with: an outage is UNAVAILABLE with RetryInfo
 * (the caller may retry in a moment), anything else stays INTERNAL.
 */
function auditWriteFailure(error: unknown, cause: Error): BrokerError {
  const mapped = toBrokerError(error, "write the audit record");
  if (mapped.code !== "database_unavailable") return new BrokerError("internal", AUDIT_WRITE_FAILED_MESSAGE, { cause });
  return new BrokerError("database_unavailable", `${AUDIT_WRITE_FAILED_MESSAGE}: the database is unavailable; retry later`, {
    cause,
    retryAfterMs: mapped.retryAfterMs,
    metadata: { operation: "write the audit record" },
  });
}

function summarize(error: unknown): Error {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return new Error(typeof code === "string" ? `${message} (${code})` : message);
}

/** A batch with its sequence numbers and hashes assigned, chained after `after`. */
interface ChainedBatch {
  /** The rows as one JSON array: each row is the canonical form that was hashed, then the two hashes. */
  readonly rows: string;
  readonly after: ChainTip;
  readonly tip: ChainTip;
}

function chainBatch(batch: readonly Pending[], after: ChainTip): ChainedBatch {
  let sequence = BigInt(after.sequence);
  let previousHash = after.hash;
  // Each row goes out as the very canonical form that was hashed, plus the two hashes, and
  // PostgreSQL takes the columns apart from it: what is stored is what was hashed, and each
  // event is serialized once (a second JSON form per row was a measurable share of a warm
  // GetAccessToken, bench/warm-path.ts).
  const rows = batch.map(({ event, time }) => {
    sequence += 1n;
    const canonical = canonicalAuditEvent({ ...event, sequence: sequence.toString(), time });
    const hash = chainHash(previousHash, canonical);
    const row = `[${canonical},"${previousHash}","${hash}"]`;
    previousHash = hash;
    return row;
  });
  return { rows: `[${rows.join(",")}]`, after, tip: { sequence: sequence.toString(), hash: previousHash } };
}

export function createPostgresAuditLog(options: PostgresAuditLogOptions): PostgresAuditLog {
  const { sql, logger } = options;
  const clock = options.clock ?? systemClock;
  const maxBatchSize = Math.max(1, options.maxBatchSize ?? 256);
  const maxDelayMs = Math.max(0, options.maxDelayMs ?? 0);
  const lockTimeoutMs = Math.max(1, Math.round(options.lockTimeoutMs ?? 5_000));
  const lockTimeout = `${lockTimeoutMs}ms`;
  const batchTimeoutMs = Math.max(1, options.batchTimeoutMs ?? lockTimeoutMs + 2_000);

  let queue: Pending[] = [];
  /** Cancels the scheduled start of the next batch, while one is scheduled. */
  let cancelScheduled: (() => void) | undefined;
  let writing: Promise<void> | undefined;
  let closed = false;
  /** Where the chain ended after this writer's last batch; unknown at first and after a failure. */
  let knownTip: ChainTip | undefined;

  function insertRows(connection: postgres.ReservedSql, chained: ChainedBatch, onlyAfterExpectedTip: boolean) {
    const condition = onlyAfterExpectedTip
      ? connection`where ${chained.after.hash} = coalesce(
            (select hash from audit_events order by audit_events.sequence desc limit 1),
            (select hash from audit_anchor),
            ${GENESIS_HASH})`
      : connection``;
    return connection`
        insert into audit_events (sequence, time, action, outcome, reason, caller, caller_kind, user_id,
                                  integration_id, provider, request_id, peer, scopes, details, previous_hash, hash)
        select (e->0->>1)::bigint, (e->0->>2)::timestamptz, e->0->>3, e->0->>4, e->0->>5, e->0->>6, e->0->>7, e->0->>8,
               e->0->>9, e->0->>10, e->0->>11, e->0->>12,
               array(select jsonb_array_elements_text(e->0->13)), e->0->14, e->>1, e->>2
          from jsonb_array_elements(${chained.rows}::text::jsonb) as r(e)
        ${condition}
`;
  }

  /**
   * One batch in one transaction. When this writer knows where the chain ends (it wrote the last
   * batch), the whole transaction goes out at once — BEGIN, the lock, an insert that inserts only
   * if the chain still ends there, COMMIT: one round trip. If another replica appended meanwhile,
   * that transaction inserted nothing, and the batch goes again chained after the tip read under
   * the lock: BEGIN with the lock and the tip read, then the insert with COMMIT. Every caller of a
   * batch waits for its commit, so each round trip saved is latency off every GetAccessToken
   * (bench/warm-path.ts). If a statement fails, PostgreSQL turns the COMMIT queued behind it into
   * a ROLLBACK; the batch rejects either way. Returns where the chain ends after the batch.
   */
  async function append(batch: readonly Pending[], speculative: ChainedBatch | undefined): Promise<ChainTip> {
    const connection = await sql.reserve();
    try {
      if (speculative !== undefined) {
        const [, , , inserted, commit] = await Promise.all([
          connection`begin`,
          connection`select set_config('lock_timeout', ${lockTimeout}, true)`,
          connection`select pg_advisory_xact_lock(${AUDIT_APPEND_LOCK_KEY}::bigint)`,
          insertRows(connection, speculative, true),
          connection`commit`,
        ]);
        if (commit.command !== "COMMIT") throw new Error(`the audit batch's transaction ended with ${commit.command}`);
        if (inserted.count === batch.length) return speculative.tip;
        if (inserted.count !== 0) throw new Error(`the audit batch inserted ${inserted.count} of ${batch.length} rows`);
      }
      const chained = chainBatch(batch, await beginAndReadTip(connection, lockTimeout));
      const [, commit] = await Promise.all([insertRows(connection, chained, false), connection`commit`]);
      if (commit.command !== "COMMIT") throw new Error(`the audit batch's transaction ended with ${commit.command}`);
      return chained.tip;
    } catch (error) {
      // Whatever failed, the connection goes back to the pool outside any transaction.
      await connection`rollback`.catch(() => undefined);
      throw error;
    } finally {
      connection.release();
    }
  }

  async function writeBatch(batch: readonly Pending[]): Promise<void> {
    const tip = knownTip;
    knownTip = undefined;
    try {
      knownTip = await withinDatabaseBound(append(batch, tip === undefined ? undefined : chainBatch(batch, tip)), batchTimeoutMs, "write the audit batch");
    } catch (error) {
      // postgres.js errors carry the statement's parameters (the whole batch): keep only the gist.
      const cause = summarize(error);
      logger.error({ err: cause, events: batch.length }, "audit events could not be written; their operations fail");
      try {
        options.onWriteFailure?.(batch.length);
      } catch (hookError) {
        logger.warn({ err: hookError }, "the audit write-failure hook threw");
      }
      for (const pending of batch) pending.reject(auditWriteFailure(error, cause));
      return;
    }
    for (const pending of batch) pending.resolve();
  }

  function startWriting(): void {
    cancelScheduled?.();
    cancelScheduled = undefined;
    if (writing !== undefined || queue.length === 0) return;
    writing = (async () => {
      while (queue.length > 0) {
        const batch = queue.slice(0, maxBatchSize);
        queue = queue.slice(batch.length);
        await writeBatch(batch);
      }
    })().finally(() => {
      writing = undefined;
      // Events that arrived between the loop's last check and now.
      if (queue.length > 0) schedule();
    });
  }

  function schedule(): void {
    // A batch in flight picks the queue up when it ends: that wait is the grouping.
    if (writing !== undefined) return;
    if (queue.length >= maxBatchSize) startWriting();
    else if (cancelScheduled === undefined) {
      if (maxDelayMs === 0) {
        const immediate = setImmediate(startWriting);
        cancelScheduled = () => clearImmediate(immediate);
      } else {
        const timeout = setTimeout(startWriting, maxDelayMs);
        cancelScheduled = () => clearTimeout(timeout);
      }
    }
  }

  async function flush(): Promise<void> {
    for (;;) {
      startWriting();
      const current = writing;
      if (current === undefined) return;
      await current;
    }
  }

  return {
    async record(input: AuditEventInput): Promise<void> {
      if (closed) throw new BrokerError("internal", AUDIT_WRITE_FAILED_MESSAGE, { reason: "AUDIT_LOG_CLOSED" });
      const event = normalizeAuditEvent(input);
      const time = clock.now();
      return new Promise<void>((resolve, reject) => {
        queue.push({ event, time, resolve, reject });
        schedule();
      });
    },
    flush,
    async close() {
      closed = true;
      await flush();
    },
  };
}
