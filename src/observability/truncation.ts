/**
 * Caps on caller-supplied text wherever the broker repeats it: log lines (logger.ts) and error
 * answers (transport/error-mapping.ts). A caller can send a 1 MiB user id; the broker must not
 * hand that back in a 1 MiB log line or error. What is cut is said, with the original length,
 * so an operator still sees that something oversized arrived.
 */

/** The most of any one caller-supplied value a log line carries (README "Request limits and refusals"). */
export const MAX_LOGGED_VALUE_CHARS = 1024;

/** `text` itself when short enough, else its first `maxChars` characters and the original length. */
export function truncateText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  return `${text.slice(0, maxChars)}…[truncated, ${text.length} characters]`;
}

/**
 * `text` cut so that its UTF-8 encoding takes at most `maxBytes` bytes (a gRPC trailer is
 * measured in bytes, and percent-encoding multiplies every non-ASCII byte by three).
 */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text, "utf8") <= maxBytes) return text;
  const suffix = `…[truncated, ${text.length} characters]`;
  const budget = Math.max(0, maxBytes - Buffer.byteLength(suffix, "utf8"));
  let end = Math.min(text.length, budget);
  while (end > 0 && Buffer.byteLength(text.slice(0, end), "utf8") > budget) end = Math.floor(end * 0.9);
  // Never split a surrogate pair: a lone surrogate does not survive UTF-8.
  const code = text.charCodeAt(end - 1);
  if (end > 0 && code >= 0xd800 && code <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}${suffix}`;
}

/**
 * A copy of `value` with every string longer than `maxChars` truncated, down to `maxDepth`
 * levels; `value` itself (no copy) when nothing needed cutting, as on almost every log line.
 */
export function truncateDeep(value: unknown, maxChars: number, maxDepth = 6): unknown {
  if (typeof value === "string") return truncateText(value, maxChars);
  if (typeof value !== "object" || value === null || maxDepth === 0) return value;
  if (value instanceof Error || value instanceof Date || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, index) => {
      const cut = truncateDeep(item, maxChars, maxDepth - 1);
      if (cut !== item) (copy ??= [...value])[index] = cut;
    });
    return copy ?? value;
  }
  let copy: Record<string, unknown> | undefined;
  for (const [key, entry] of Object.entries(value)) {
    const cut = truncateDeep(entry, maxChars, maxDepth - 1);
    if (cut !== entry) (copy ??= { ...(value as Record<string, unknown>) })[key] = cut;
  }
  return copy ?? value;
}
