/**
 * The table the wire tests of error reasons are written as: for each reason, a real call that
 * the broker refuses with it, and what the refusal must carry. Each row runs over the gRPC
 * listener and over Connect on the HTTP listener; the catalogue test checks that the tables
 * together hold every reason a client can receive.
 */
import type { Code } from "@connectrpc/connect";
import { expect, it } from "vitest";
import { ERROR_REASONS, type ErrorReason, type ErrorReasonEntry } from "../../src/domain/error-reasons.js";
import { ERROR_DOMAIN } from "../../src/transport/error-mapping.js";
import { refusalOf, WIRES, type Wire, type WireCaller, type WireRefusal } from "./wire-call.js";

export interface WireCase<World> {
  readonly status: Code;
  /** Exactly the keys of `ErrorInfo.metadata`. */
  readonly metadataKeys: readonly string[];
  /** Whether the refusal carries `RetryInfo`; unchecked when omitted. */
  readonly retry?: boolean;
  /** The call that must be refused; `wire` makes it over one listener. */
  produce(world: World, wire: WireCaller): Promise<unknown>;
  /** Further checks of the refusal (the metadata's values, the message). */
  check?(refusal: WireRefusal, world: World): void;
  readonly timeoutMs?: number;
}

export type WireCases<World> = Partial<Record<ErrorReason, WireCase<World>>>;

/** A user of its own for each row and wire: sessions, integrations and rate limits never meet. */
export function userFor(tag: string, wire: WireCaller): string {
  return `${tag.toLowerCase().replace(/_/g, "-")}-${wire.wire}`;
}

/** The reason a caller receives for `reason`: itself, or the one the broker translates it into. */
export function answeredReason(reason: ErrorReason): string {
  const entry: ErrorReasonEntry = ERROR_REASONS[reason];
  return entry.seenAs ?? reason;
}

/** Runs every row over both wires, in the table's order. */
export function itRefusesOnTheWire<World extends { readonly callers: Record<Wire, WireCaller> }>(cases: WireCases<World>, world: () => World): void {
  for (const [reason, row] of Object.entries(cases) as [ErrorReason, WireCase<World>][]) {
    for (const wire of WIRES) {
      it(`${reason} over ${wire === "grpc" ? "gRPC" : "Connect"}`, async () => {
        const current = world();
        const refusal = await refusalOf(row.produce(current, current.callers[wire]));
        expect({ code: refusal.code, reason: refusal.reason, domain: refusal.domain }, refusal.message).toEqual({ code: row.status, reason: answeredReason(reason), domain: ERROR_DOMAIN });
        expect(Object.keys(refusal.metadata).sort()).toEqual([...row.metadataKeys].sort());
        if (row.retry !== undefined) expect(refusal.retryDelayMs !== undefined).toBe(row.retry);
        row.check?.(refusal, current);
      }, row.timeoutMs ?? 30_000);
    }
  }
}
