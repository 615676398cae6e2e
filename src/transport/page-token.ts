/**
 * The page tokens of every list RPC (AIP-158): opaque to callers, inside base64url JSON of the
 * position to continue after plus `f`, a short digest of the filters the first page was asked
 * with. A token replayed with other filters is refused instead of silently skipping rows; page
 * size may change between pages, so it is not part of the digest.
 */
import { createHash } from "node:crypto";
import { invalidArgument } from "../domain/errors.js";

export interface PageTokenCodec<Position> {
  encode(position: Position, filter: unknown): string;
  /** The position to continue after; `invalid_argument` on `page_token` for anything else. */
  decode(token: string, filter: unknown): Position;
}

export interface PageTokenFormat<Position> {
  /** The position as the token's fields (never `f`). */
  fieldsOf(position: Position): Readonly<Record<string, string>>;
  /** The position back from a decoded token's fields; undefined when they are not one. */
  positionOf(fields: Readonly<Record<string, unknown>>): Position | undefined;
  /** The `page_token` violation for a token this RPC never issued. */
  notIssued: string;
  /** The `page_token` violation for a token issued for other filters. */
  otherFilters: string;
}

function fingerprint(filter: unknown): string {
  return createHash("sha256").update(JSON.stringify(filter)).digest("base64url").slice(0, 16);
}

function fieldsOfToken(token: string): Readonly<Record<string, unknown>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
}

export function pageTokenCodec<Position>(format: PageTokenFormat<Position>): PageTokenCodec<Position> {
  return {
    encode(position, filter) {
      return Buffer.from(JSON.stringify({ ...format.fieldsOf(position), f: fingerprint(filter) })).toString("base64url");
    },
    decode(token, filter) {
      const fields = fieldsOfToken(token);
      const position = format.positionOf(fields);
      if (position === undefined) throw invalidArgument("page_token", format.notIssued);
      if (fields["f"] !== fingerprint(filter)) throw invalidArgument("page_token", format.otherFilters);
      return position;
    },
  };
}
