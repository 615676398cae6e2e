/**
 * Absolute http(s) URLs in configuration (public URL, provider endpoints, JWKS, return-to
 * prefixes). User info is refused: credentials in a URL end up in logs and browser history.
 */

/** The URL when `value` is an absolute http(s) URL without user info, else undefined. */
export function parseHttpUrl(value: string): URL | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.username !== "" || url.password !== "") return undefined;
  return url;
}

export const HTTP_URL_MESSAGE = "must be an absolute http(s) URL without user info";
