/**
 * The audit trail's rule for tokens handed out: each disclosure is recorded once, repeats are
 * counted.
 *
 * A disclosure is keyed by (caller, integration, token version, required scope set). The first
 * one on this replica is written durably (`token.issued`) before the caller is answered: the
 * caller waits for the record and fails when it cannot be written, and a failed record is not
 * remembered, so the next call is a first disclosure again. Handing the same token to the same
 * caller again discloses nothing new: a repeat is counted in memory and answered at once
 * (`disclose` returns `undefined`, no promise). The counts go to the trail as one
 * `token.reissued` row per key and pass (`flush`, run periodically by the broker; every
 * interval, when the integration's token is replaced, when a key is dropped for room, and at
 * shutdown), carrying in `details` the count of repeats since the key's previous row, the first
 * and last time and request id among them, and the token version.
 *
 * A crash loses what was counted since the last pass, never a first disclosure. Counts whose row
 * could not be written are kept for the next pass, and until one succeeds a repeat waits for that
 * retry (and fails with it), so unwritten counts never pile up beyond about one interval.
 *
 * Memory is bounded by `maxKeys`; the least recently used integration's keys go first. Dropping
 * a key hands its counts to the next pass, and only means that its next call is recorded as a
 * first disclosure again.
 */
import { auditCaller, auditSubject, type AuditEventInput, type AuditLog, type Logger } from "../ports.js";
import type { Integration, Principal, RequestContext } from "../types.js";

export interface DisclosureLedger {
  /**
   * Records that `ctx`'s caller receives the token set `tokenVersion` of `integration` for
   * `requiredScopes`, at `nowMs`. `undefined`: a repeat, counted. A promise: answer only once
   * it resolves; it rejects when the record (or the retry of unwritten counts) fails.
   */
  disclose(ctx: RequestContext, integration: Integration, tokenVersion: number, requiredScopes: readonly string[], nowMs: number): Promise<void> | undefined;
  /**
   * Without side effects: when `principal` receiving that token set for `requiredScopes` would be
   * a repeat `disclose` counts at once (its first disclosure durable, no retry pending), the
   * function that counts it exactly as `disclose` would; otherwise undefined (`disclose` decides).
   * The count must be taken in the same synchronous turn, before anything else runs.
   */
  repeatOf(principal: Principal, integrationId: string, tokenVersion: number, requiredScopes: readonly string[]): ((ctx: RequestContext, nowMs: number) => void) | undefined;
  /**
   * The integration's token set is replaced by `version` (absent: by an unknown one): the counts
   * of older versions are written and their keys forgotten.
   */
  replaced(integrationId: string, version?: number): void;
  /** Writes every count held; rejects when a row could not be written (its counts are kept). */
  flush(): Promise<void>;
  /** Keys remembered. */
  readonly size: number;
}

export interface DisclosureLedgerOptions {
  readonly audit: AuditLog;
  readonly logger: Logger;
  /** Most keys remembered at once. */
  readonly maxKeys: number;
}

/** Who received which token, as every row about a key names it. */
interface DisclosureSubject {
  readonly integration: ReturnType<typeof auditSubject>;
  readonly principal: Principal;
  readonly tokenVersion: number;
  /** Sorted, without duplicates. */
  readonly scopes: readonly string[];
}

/** Repeats counted and not yet written. */
interface Repeats {
  count: number;
  firstAt: number;
  lastAt: number;
  firstRequestId: string;
  lastRequestId: string;
  lastPeer: string;
}

interface Disclosure extends Repeats {
  readonly subject: DisclosureSubject;
  /** The first disclosure's record while it is being written. */
  recording: Promise<void> | undefined;
}

/** The keys of one integration: of its newest token version seen, in use order. */
interface IntegrationKeys {
  readonly version: number;
  readonly keys: Map<string, Disclosure>;
}

interface Row extends Repeats {
  /** Integration, token version and caller key: rows of one key merge. */
  readonly id: string;
  readonly subject: DisclosureSubject;
}

const SEPARATOR = "\u0000";

/** The required scopes as a set: sorted, each once, space-separated (scope tokens hold no space). */
export function scopeSetKey(requiredScopes: readonly string[]): string {
  if (requiredScopes.length === 0) return "";
  if (requiredScopes.length === 1) return requiredScopes[0] ?? "";
  return [...new Set(requiredScopes)].sort().join(" ");
}

/** The subject comes last: it is the one part that may hold any character. */
function callerKey(principal: Principal, requiredScopes: readonly string[]): string {
  return principal.kind + SEPARATOR + scopeSetKey(requiredScopes) + SEPARATOR + principal.subject;
}

function rowId(integrationId: string, tokenVersion: number, key: string): string {
  return integrationId + SEPARATOR + tokenVersion + SEPARATOR + key;
}

function reissuedEvent(row: Row): AuditEventInput {
  const { subject } = row;
  return {
    action: "token.reissued",
    outcome: "success",
    caller: subject.principal.subject,
    callerKind: subject.principal.kind,
    requestId: row.lastRequestId,
    peer: row.lastPeer,
    ...subject.integration,
    scopes: subject.scopes,
    details: {
      token_version: String(subject.tokenVersion),
      count: String(row.count),
      first_seen: new Date(row.firstAt).toISOString(),
      last_seen: new Date(row.lastAt).toISOString(),
      first_request_id: row.firstRequestId,
      last_request_id: row.lastRequestId,
    },
  };
}

function count(repeats: Repeats, ctx: RequestContext, nowMs: number): void {
  if (repeats.count === 0) {
    repeats.firstAt = nowMs;
    repeats.firstRequestId = ctx.requestId;
  }
  repeats.count += 1;
  repeats.lastAt = nowMs;
  repeats.lastRequestId = ctx.requestId;
  repeats.lastPeer = ctx.peer;
}

/** Adds `from`'s counts to `into`, keeping the earliest first and the latest last. */
function merge(into: Repeats, from: Repeats): void {
  if (from.firstAt < into.firstAt) {
    into.firstAt = from.firstAt;
    into.firstRequestId = from.firstRequestId;
  }
  if (from.lastAt >= into.lastAt) {
    into.lastAt = from.lastAt;
    into.lastRequestId = from.lastRequestId;
    into.lastPeer = from.lastPeer;
  }
  into.count += from.count;
}

export function createDisclosureLedger(options: DisclosureLedgerOptions): DisclosureLedger {
  const { audit, logger } = options;
  const maxKeys = Math.max(1, options.maxKeys);
  /** Map order is the use order: the least recently used integration comes first. */
  const integrations = new Map<string, IntegrationKeys>();
  let size = 0;
  /** Counts taken out of their keys and not yet written, by integration, version and key. */
  const unwritten = new Map<string, Row>();
  /** Set when a pass left rows unwritten: repeats then wait for the retry. */
  let retryNeeded = false;
  /** The pass queued behind the running one; it takes every count there is when it starts. */
  let queued: { sweep: boolean; readonly done: Promise<void> } | undefined;
  let tail: Promise<void> = Promise.resolve();

  function takeOut(integrationId: string, key: string, entry: Disclosure): void {
    if (entry.count === 0) return;
    const id = rowId(integrationId, entry.subject.tokenVersion, key);
    const row: Row = { id, subject: entry.subject, count: entry.count, firstAt: entry.firstAt, lastAt: entry.lastAt, firstRequestId: entry.firstRequestId, lastRequestId: entry.lastRequestId, lastPeer: entry.lastPeer };
    const earlier = unwritten.get(id);
    if (earlier === undefined) unwritten.set(id, row);
    else merge(earlier, row);
    entry.count = 0;
  }

  function forget(integrationId: string, record: IntegrationKeys): void {
    for (const [key, entry] of record.keys) takeOut(integrationId, key, entry);
    size -= record.keys.size;
    integrations.delete(integrationId);
  }

  /** Drops keys until `size` fits, least recently used integrations first, `current`'s oldest keys last. */
  function makeRoom(currentId: string, current: IntegrationKeys): void {
    let dropped = false;
    for (const [integrationId, record] of integrations) {
      if (size <= maxKeys) break;
      if (record === current) continue;
      forget(integrationId, record);
      dropped = true;
    }
    for (const [key, entry] of current.keys) {
      if (size <= maxKeys) break;
      if (entry.recording !== undefined) continue;
      takeOut(currentId, key, entry);
      current.keys.delete(key);
      size -= 1;
      dropped = true;
    }
    if (dropped) writeSoon();
  }

  async function write(): Promise<void> {
    const rows = [...unwritten.values()];
    unwritten.clear();
    if (rows.length === 0) {
      retryNeeded = false;
      return;
    }
    // The audit writer groups concurrent records into batches.
    const results = await Promise.allSettled(rows.map((row) => audit.record(reissuedEvent(row))));
    let failure: unknown;
    results.forEach((result, index) => {
      const row = rows[index];
      if (result.status === "fulfilled" || row === undefined) return;
      failure ??= result.reason;
      const later = unwritten.get(row.id);
      if (later !== undefined) merge(row, later);
      unwritten.set(row.id, row);
    });
    retryNeeded = failure !== undefined;
    if (failure !== undefined) throw failure;
  }

  /** A write pass after the running one; `sweep` also takes the counts still held by the keys. */
  function pass(sweep: boolean): Promise<void> {
    if (queued !== undefined) {
      queued.sweep ||= sweep;
      return queued.done;
    }
    const next: { sweep: boolean; done: Promise<void> } = {
      sweep,
      done: tail.then(() => {
        queued = undefined;
        if (next.sweep) for (const [integrationId, record] of integrations) for (const [key, entry] of record.keys) takeOut(integrationId, key, entry);
        return write();
      }),
    };
    queued = next;
    tail = next.done.catch(() => undefined);
    return next.done;
  }

  /** Writes taken-out counts in the background; a failure leaves them for the next pass. */
  function writeSoon(): void {
    pass(false).catch((error: unknown) => logger.warn({ err: error }, "repeated token disclosures could not be written yet; retrying at the next pass"));
  }

  /** The durable record of a first disclosure; a failure forgets the key. */
  function recordFirst(ctx: RequestContext, integration: Integration, tokenVersion: number, requiredScopes: readonly string[], remember?: { record: IntegrationKeys; key: string }): Promise<void> {
    const subject: DisclosureSubject = { integration: auditSubject(integration), principal: ctx.principal, tokenVersion, scopes: [...new Set(requiredScopes)].sort() };
    const recording = audit.record({
      action: "token.issued",
      outcome: "success",
      ...auditCaller(ctx),
      ...subject.integration,
      scopes: subject.scopes,
      details: { token_version: String(tokenVersion) },
    });
    if (remember === undefined) return recording;
    const { record, key } = remember;
    const entry: Disclosure = { subject, recording: undefined, count: 0, firstAt: 0, lastAt: 0, firstRequestId: "", lastRequestId: "", lastPeer: "" };
    entry.recording = recording.then(
      () => {
        entry.recording = undefined;
      },
      (error: unknown) => {
        if (record.keys.get(key) === entry) {
          record.keys.delete(key);
          size -= 1;
        }
        // Failures must not leave records behind: only keys count towards the bound.
        if (record.keys.size === 0 && integrations.get(integration.id) === record) integrations.delete(integration.id);
        throw error;
      },
    );
    record.keys.set(key, entry);
    size += 1;
    makeRoom(integration.id, record);
    return entry.recording;
  }

  /** Counts a repeat answered after a wait; if its key was dropped meanwhile, the count goes to the next pass. */
  function countAfterWait(integrationId: string, key: string, entry: Disclosure, ctx: RequestContext, nowMs: number): void {
    count(entry, ctx, nowMs);
    if (integrations.get(integrationId)?.keys.get(key) === entry) return;
    takeOut(integrationId, key, entry);
    writeSoon();
  }

  function discloseSlowly(ctx: RequestContext, integration: Integration, tokenVersion: number, requiredScopes: readonly string[], nowMs: number): Promise<void> | undefined {
    let record = integrations.get(integration.id);
    // A token older than one already handed out here (a read that raced a refresh): recorded, not remembered.
    if (record !== undefined && record.version > tokenVersion) return recordFirst(ctx, integration, tokenVersion, requiredScopes);
    if (record !== undefined && record.version < tokenVersion) {
      forget(integration.id, record);
      writeSoon();
      record = undefined;
    }
    if (record === undefined) record = { version: tokenVersion, keys: new Map() };
    integrations.delete(integration.id);
    integrations.set(integration.id, record);
    const key = callerKey(ctx.principal, requiredScopes);
    const entry = record.keys.get(key);
    if (entry === undefined) return recordFirst(ctx, integration, tokenVersion, requiredScopes, { record, key });
    // Joins the first disclosure being written: answered once it is durable, and counted as a repeat.
    if (entry.recording !== undefined) return entry.recording.then(() => countAfterWait(integration.id, key, entry, ctx, nowMs));
    // Unwritten counts wait for their retry: the repeat is answered once they are written, and fails with them.
    if (retryNeeded) return pass(false).then(() => countAfterWait(integration.id, key, entry, ctx, nowMs));
    count(entry, ctx, nowMs);
    return undefined;
  }

  /** The one place that decides a repeat is answered at once, and how it is counted. */
  function repeatOf(principal: Principal, integrationId: string, tokenVersion: number, requiredScopes: readonly string[]): ((ctx: RequestContext, nowMs: number) => void) | undefined {
    const record = integrations.get(integrationId);
    if (record === undefined || record.version !== tokenVersion || retryNeeded) return undefined;
    const entry = record.keys.get(callerKey(principal, requiredScopes));
    if (entry === undefined || entry.recording !== undefined) return undefined;
    return (ctx, nowMs) => {
      count(entry, ctx, nowMs);
      integrations.delete(integrationId);
      integrations.set(integrationId, record);
    };
  }

  return {
    disclose(ctx, integration, tokenVersion, requiredScopes, nowMs) {
      const repeat = repeatOf(ctx.principal, integration.id, tokenVersion, requiredScopes);
      if (repeat === undefined) return discloseSlowly(ctx, integration, tokenVersion, requiredScopes, nowMs);
      repeat(ctx, nowMs);
      return undefined;
    },
    repeatOf,
    replaced(integrationId, version) {
      const record = integrations.get(integrationId);
      if (record === undefined || (version !== undefined && record.version >= version)) return;
      forget(integrationId, record);
      writeSoon();
    },
    flush: () => pass(true),
    get size() {
      return size;
    },
  };
}
