/**
 * Where the browser goes after the callback. `return_to` comes from the caller of
 * StartAuthorization, so it must match the configured allow-list, or the broker would be an
 * open redirector (RFC 9700 §4.11, oauth-client-security.md §4). The value kept in the session
 * is the normalized URL that was checked, never the raw input.
 */
import { BrokerError, invalidArgument } from "./errors.js";

/** One allow-list entry: an origin and a path prefix. */
export interface ReturnToPrefix {
  readonly origin: string;
  readonly pathPrefix: string;
  /** The entry as a URL, used when the caller gives no `return_to`. */
  readonly href: string;
}

const MAX_LENGTH = 2048;
/** The outcome parameters the broker appends; callers' own values of these are replaced. */
const OUTCOME_PARAMETERS = ["integration_id", "status", "error"] as const;

export type OutcomeParameters = Partial<Record<(typeof OUTCOME_PARAMETERS)[number], string>>;

/** Parses the configured allow-list; throws for an entry that is not an absolute http(s) URL. */
export function parseReturnToAllowList(entries: readonly string[]): ReturnToPrefix[] {
  return entries.map((entry, index) => {
    const url = parseHttpUrl(entry);
    if (url === undefined) {
      throw new BrokerError(
        "failed_precondition",
        `authorization.returnToAllowList[${index}] must be an absolute http(s) URL without user info`,
        { reason: "RETURN_TO_ALLOW_LIST_INVALID" },
      );
    }
    return { origin: url.origin, pathPrefix: url.pathname, href: `${url.origin}${url.pathname}` };
  });
}

/**
 * The `return_to` to store: the first allow-list entry when none is given, else the requested
 * URL, normalized, when its origin equals an entry's origin and its path lies under the
 * entry's path. Throws `invalid_argument` naming `return_to` otherwise.
 */
export function resolveReturnTo(requested: string, allowList: readonly ReturnToPrefix[]): string {
  const first = allowList[0];
  if (first === undefined) {
    throw new BrokerError(
      "failed_precondition",
      "no return_to is allowed: configure authorization.returnToAllowList with the application URLs the browser may return to",
      { reason: "RETURN_TO_ALLOW_LIST_EMPTY" },
    );
  }
  if (requested === "") return first.href;
  const url = requested.length > MAX_LENGTH ? undefined : parseHttpUrl(requested);
  if (url === undefined) {
    throw invalidArgument("return_to", "must be an absolute http(s) URL without user info, spaces or backslashes");
  }
  const allowed = allowList.some((prefix) => prefix.origin === url.origin && pathUnder(url.pathname, prefix.pathPrefix));
  if (!allowed) {
    throw invalidArgument(
      "return_to",
      `${url.origin}${url.pathname} is not in the allow-list; allowed: ${allowList.map((p) => p.href).join(" ")}`,
    );
  }
  return url.href;
}

/** `returnTo` with the outcome parameters set (replacing any of the same name). */
export function withOutcome(returnTo: string, outcome: OutcomeParameters): string {
  const url = new URL(returnTo);
  for (const name of OUTCOME_PARAMETERS) url.searchParams.delete(name);
  for (const name of OUTCOME_PARAMETERS) {
    const value = outcome[name];
    if (value !== undefined) url.searchParams.set(name, value);
  }
  return url.href;
}

/**
 * Parses strictly: the text itself must start with `http://` or `https://` (so `//evil.com`,
 * `javascript:` and relative references never parse against a base), contain no whitespace,
 * control characters or backslashes, and carry no user info (`https://app@evil.com`).
 */
function parseHttpUrl(text: string): URL | undefined {
  if (hasForbiddenCharacter(text)) return undefined;
  const scheme = /^(https?):\/\/([^/?#]*)/i.exec(text);
  if (scheme === null || (scheme[2] ?? "").includes("@") || scheme[2] === "") return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.username !== "" || url.password !== "" || url.hostname === "") return undefined;
  return url;
}

/** Path-segment-aware prefix: `/app` allows `/app` and `/app/x`, not `/apple`. */
function pathUnder(pathname: string, prefix: string): boolean {
  if (prefix === "/" || prefix === "") return true;
  if (prefix.endsWith("/")) return pathname.startsWith(prefix);
  return pathname === prefix || pathname.startsWith(`${prefix}/`);
}

/** Whitespace, control characters and the backslash (which some parsers read as "/"). */
function hasForbiddenCharacter(text: string): boolean {
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (code <= 0x20 || code === 0x7f || code === 0x5c) return true;
  }
  return false;
}
