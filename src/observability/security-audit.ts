/**
 * Audit events for refused calls: `auth.failed`, `policy.denied` and `rate_limit.exceeded`.
 *
 * Refusals are cheap to cause — anyone who can reach the port can send a bad token — while each
 * audit row costs a write under the chain's lock. So identical refusals are coalesced: per
 * (action, reason, peer host, caller, method), the first refusal in a window (default one minute)
 * is recorded at once with `details.count = "1"`; repeats within that window are only counted,
 * and when the window ends (or at shutdown) one more event records them with `details.count = N`,
 * `details.coalesced = "true"` and the first and last of the counted request ids and times. A flood from one peer therefore
 * costs at most two rows per kind per window. The number of tracked keys is bounded too: beyond
 * `maxKeys` (default 1,000), new kinds of refusal fall into one overflow bucket per action,
 * recorded once per window with reason `various` and the count — so even many peers together
 * write at most about 2 × `maxKeys` rows per window, and memory stays bounded.
 *
 * Writes are not awaited by the call (the refused operation does not happen, so there is nothing
 * to roll back when a write fails); a failed write is logged.
 */
import { epochMs, type AuditLog, type AuditOutcome, type Clock } from "../domain/ports.js";
import { systemClock } from "../domain/ports.js";
import type { Logger } from "./logger.js";

export type SecurityAction = "auth.failed" | "policy.denied" | "rate_limit.exceeded";

export interface SecurityEvent {
  readonly action: SecurityAction;
  readonly outcome: Extract<AuditOutcome, "failure" | "denied">;
  /** Stable reason: `expired`, `bad_signature`, `RPC_NOT_ALLOWED`, `token`... */
  readonly reason: string;
  /** Full method name of the refused call. */
  readonly rpc: string;
  readonly requestId: string;
  /** "ip:port" of the caller. */
  readonly peer: string;
  /** Authenticated (or certificate) principal, when there is one. */
  readonly caller?: string | undefined;
  readonly callerKind?: string | undefined;
  readonly integrationId?: string | undefined;
  readonly provider?: string | undefined;
  readonly details?: Readonly<Record<string, string>> | undefined;
}

export interface SecurityAuditRecorder {
  /** Records (or counts) one refusal; never throws, never waits. */
  record(event: SecurityEvent): void;
  /** Waits for the writes already started; windows stay open. */
  settle(): Promise<void>;
  /** Ends every window (recording what was counted) and waits for all writes. */
  flush(): Promise<void>;
  /** Flushes and stops: later refusals are no longer recorded. */
  close(): Promise<void>;
}

export interface SecurityAuditRecorderOptions {
  readonly audit: AuditLog;
  readonly logger: Logger;
  readonly clock?: Clock | undefined;
  /** Coalescing window; default 60 s. */
  readonly windowMs?: number | undefined;
  /** Most distinct refusal kinds tracked at once; default 1,000. */
  readonly maxKeys?: number | undefined;
  /** Ends expired windows on a timer (false in tests that call `flush`); default true. */
  readonly sweep?: boolean | undefined;
}

interface Window {
  readonly endsAt: number;
  /** Refusals counted but not yet recorded (all but the first, or all of an overflow window). */
  repeats: number;
  firstRepeat: { readonly event: SecurityEvent; readonly at: number } | undefined;
  lastRepeat: { readonly event: SecurityEvent; readonly at: number } | undefined;
  readonly overflow: boolean;
}

const SEPARATOR = "\u0000";

/** The host part of "ip:port" ("[::1]:5", "::ffff:10.0.0.1:5"): a client opening new connections keeps its key. */
export function peerHost(peer: string): string {
  return peer.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
}

export function createSecurityAuditRecorder(options: SecurityAuditRecorderOptions): SecurityAuditRecorder {
  const { audit, logger } = options;
  const clock = options.clock ?? systemClock;
  const windowMs = Math.max(1, options.windowMs ?? 60_000);
  const maxKeys = Math.max(1, options.maxKeys ?? 1_000);
  const windows = new Map<string, Window>();
  const inFlight = new Set<Promise<void>>();
  let closed = false;

  function write(event: SecurityEvent, details: Record<string, string>): void {
    const pending = audit
      .record({
        action: event.action,
        outcome: event.outcome,
        reason: event.reason,
        caller: event.caller,
        callerKind: event.callerKind,
        integrationId: event.integrationId,
        provider: event.provider,
        requestId: event.requestId,
        peer: event.peer,
        details: { ...event.details, rpc: event.rpc, ...details },
      })
      .catch((error: unknown) => {
        logger.warn({ err: error, action: event.action, reason: event.reason }, "a refused call could not be audited");
      });
    inFlight.add(pending);
    void pending.finally(() => inFlight.delete(pending));
  }

  /** Records, as one event, what a window counted without recording; nothing if it counted nothing. */
  function end(window: Window): void {
    const { firstRepeat, lastRepeat } = window;
    if (window.repeats === 0 || firstRepeat === undefined || lastRepeat === undefined) return;
    const last = lastRepeat.event;
    const details = {
      count: String(window.repeats),
      coalesced: window.overflow ? "overflow" : "true",
      first_request_id: firstRepeat.event.requestId,
      last_request_id: last.requestId,
      first_seen: new Date(firstRepeat.at).toISOString(),
      last_seen: new Date(lastRepeat.at).toISOString(),
    };
    if (window.overflow) {
      write({ action: last.action, outcome: last.outcome, reason: "various", rpc: "various", requestId: last.requestId, peer: "" }, details);
    } else {
      write(last, details);
    }
  }

  function sweep(now: number, all: boolean): void {
    // Windows are opened in time order and all last `windowMs`: the expired ones come first.
    for (const [key, window] of windows) {
      if (!all && now < window.endsAt) break;
      windows.delete(key);
      end(window);
    }
  }

  // A quarter window: counted repeats are recorded at most a quarter window late.
  const timer = options.sweep === false ? undefined : setInterval(() => sweep(epochMs(clock), false), Math.max(1, windowMs / 4));
  timer?.unref();

  function open(key: string, now: number, overflow: boolean): Window {
    const window: Window = { endsAt: now + windowMs, repeats: 0, firstRepeat: undefined, lastRepeat: undefined, overflow };
    windows.set(key, window);
    return window;
  }

  async function settle(): Promise<void> {
    while (inFlight.size > 0) await Promise.all([...inFlight]);
  }

  async function flush(): Promise<void> {
    sweep(epochMs(clock), true);
    await settle();
  }

  return {
    record(event) {
      if (closed) return;
      const now = epochMs(clock);
      let key = [event.action, event.reason, peerHost(event.peer), event.caller ?? "", event.rpc].join(SEPARATOR);
      let window = windows.get(key);
      if (window !== undefined && now >= window.endsAt) {
        windows.delete(key);
        end(window);
        window = undefined;
      }
      if (window === undefined) {
        if (windows.size >= maxKeys) sweep(now, false);
        if (windows.size < maxKeys) {
          open(key, now, false);
          write(event, { count: "1" });
          return;
        }
        // Too many distinct refusals at once: count them per action, without a row each.
        key = `${event.action}${SEPARATOR}overflow`;
        window = windows.get(key) ?? open(key, now, true);
      }
      window.repeats += 1;
      window.firstRepeat ??= { event, at: now };
      window.lastRepeat = { event, at: now };
    },
    settle,
    flush,
    async close() {
      if (timer !== undefined) clearInterval(timer);
      await flush();
      closed = true;
    },
  };
}
