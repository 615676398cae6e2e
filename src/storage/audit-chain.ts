/**
 * Verification of the audit hash chain. The table is walked in sequence order from the retention
 * anchor (or genesis), in keyset-paginated batches inside one read-only REPEATABLE READ
 * transaction, so concurrent appends and retention never show a half-moved chain. Each event must
 * carry the next sequence number, name the previous event's hash, and hash to its stored `hash`:
 *
 * - an edited event fails its own hash;
 * - a deleted event leaves a sequence gap (or, if the rest were renumbered, a `previous_hash`
 *   that does not match);
 * - swapped or reordered events fail the `previous_hash` link.
 *
 * What the chain alone cannot show: deletion of the newest events (what remains is a valid, shorter
 * chain), and a rewrite by someone who recomputes every later hash (the hash is not keyed). Both
 * are caught by remembering what was verified before — see audit-chain-monitor.ts — and by
 * shipping the export (with hashes) to a system the database's users cannot write to.
 */
import type postgres from "postgres";
import { AUDIT_EVENT_COLUMNS, auditEventHash, GENESIS_HASH, type AuditEventRow } from "./audit-hash.js";

/** A position in the chain: an event's sequence and hash, or the anchor. */
export interface ChainPoint {
  readonly sequence: bigint;
  readonly hash: string;
}

export interface AuditChainVerdict {
  readonly intact: boolean;
  /** Events whose hash and link were checked by this verification. */
  readonly checked: number;
  /** The first sequence at which the chain does not hold. */
  readonly firstBadSequence?: number;
  readonly problem?: string;
  /** The newest event that verified (the anchor's sequence when nothing follows it). */
  readonly lastSequence?: number;
}

/** The outcome of a walk, with the point it reached for incremental verification. */
export interface ChainWalk {
  readonly verdict: AuditChainVerdict;
  /** The last good point (the start when nothing verified). */
  readonly tip: ChainPoint;
}

export const DEFAULT_VERIFY_BATCH_SIZE = 1_000;

/** The transaction mode verification runs in: one snapshot for anchor and rows. */
export const VERIFY_TRANSACTION = "isolation level repeatable read read only";

export const GENESIS: ChainPoint = { sequence: 0n, hash: GENESIS_HASH };

export async function readAuditAnchor(tx: postgres.TransactionSql): Promise<ChainPoint | undefined> {
  const [anchor] = await tx<{ sequence: string; hash: string }[]>`
    select sequence::text as sequence, hash from audit_anchor`;
  return anchor ? { sequence: BigInt(anchor.sequence), hash: anchor.hash } : undefined;
}

function broken(checked: number, tip: ChainPoint, sequence: bigint, problem: string): ChainWalk {
  return {
    verdict: { intact: false, checked, firstBadSequence: Number(sequence), problem, lastSequence: Number(tip.sequence) },
    tip,
  };
}

/**
 * Walks the events after `from`, checking each one. `checkpoint`, a point verified earlier, must
 * still carry the hash it had then: that catches a rewrite whose hashes were all recomputed.
 */
export async function walkAuditChain(
  tx: postgres.TransactionSql,
  from: ChainPoint,
  options: { batchSize?: number | undefined; checkpoint?: ChainPoint | undefined } = {},
): Promise<ChainWalk> {
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_VERIFY_BATCH_SIZE);
  const checkpoint = options.checkpoint;
  let previous = from;
  let checked = 0;
  for (;;) {
    const rows = await tx<AuditEventRow[]>`
      select ${tx.unsafe(AUDIT_EVENT_COLUMNS)} from audit_events
       where sequence > ${previous.sequence.toString()}::bigint
       order by audit_events.sequence
       limit ${batchSize}`;
    for (const row of rows) {
      const sequence = BigInt(row.sequence);
      const expected = previous.sequence + 1n;
      if (sequence !== expected) {
        return broken(checked, previous, expected, `event ${expected} is missing: the next stored event is ${sequence} (deleted or renumbered)`);
      }
      if (row.previous_hash !== previous.hash) {
        return broken(
          checked,
          previous,
          sequence,
          `event ${sequence} does not link to event ${previous.sequence}: its previous_hash differs (events were removed, inserted or reordered)`,
        );
      }
      if (auditEventHash(row.previous_hash, row) !== row.hash) {
        return broken(checked, previous, sequence, `event ${sequence} does not match its hash: it was modified`);
      }
      if (checkpoint !== undefined && sequence === checkpoint.sequence && row.hash !== checkpoint.hash) {
        return broken(checked, previous, sequence, `event ${sequence} differs from when it was verified earlier: the chain was rewritten`);
      }
      previous = { sequence, hash: row.hash };
      checked += 1;
    }
    if (rows.length < batchSize) break;
  }
  return { verdict: { intact: true, checked, lastSequence: Number(previous.sequence) }, tip: previous };
}

/** Walks the whole remaining chain from the anchor (or genesis) inside `tx`. */
export async function walkFromAnchor(
  tx: postgres.TransactionSql,
  options: { batchSize?: number | undefined; checkpoint?: ChainPoint | undefined } = {},
): Promise<ChainWalk> {
  const anchor = await readAuditAnchor(tx);
  return walkAuditChain(tx, anchor ?? GENESIS, options);
}

/**
 * Verifies the whole chain that retention left, from the anchor. Used by `npm run audit:verify`
 * and at start-up; `intact: false` names the first bad sequence and what is wrong with it.
 */
export async function verifyAuditChain(
  sql: postgres.Sql,
  options: { batchSize?: number | undefined } = {},
): Promise<AuditChainVerdict> {
  const walk = await sql.begin(VERIFY_TRANSACTION, (tx) => walkFromAnchor(tx, { batchSize: options.batchSize }));
  return walk.verdict;
}
