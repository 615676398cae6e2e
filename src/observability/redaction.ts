/**
 * The broker's one set of redaction rules, shared by the logger and the error reporter: field
 * names that carry secrets (censored whatever their value), and value patterns that look like
 * credentials wherever they appear in free text — an exception message quoting a token endpoint's
 * answer, a URL with `?code=`, a header copied into a cause.
 */

export const REDACTED = "[redacted]";

/** Field names that may carry secrets. */
export const SECRET_KEYS: readonly string[] = [
  "access_token",
  "accessToken",
  "refresh_token",
  "refreshToken",
  "id_token",
  "idToken",
  "client_secret",
  "clientSecret",
  "code_verifier",
  "codeVerifier",
  "state",
  "token",
  "password",
  "secret",
  "secretId",
  "secret_id",
  "authorization",
  "cookie",
  "set-cookie",
  "x-vault-token",
  "plaintext",
  "ciphertext",
];

const SECRET_KEY_SET: ReadonlySet<string> = new Set(SECRET_KEYS.map((key) => key.toLowerCase()));

export function isSecretKey(key: string): boolean {
  return SECRET_KEY_SET.has(key.toLowerCase());
}

/** Query / form / JSON parameters whose value is a credential (RFC 6749 §4.1.2, §4.1.3, §6; RFC 7636 §4.5). */
const SECRET_PARAMS = [
  "access_token",
  "refresh_token",
  "id_token",
  "code",
  "code_verifier",
  "client_secret",
  "client_assertion",
  "assertion",
  "subject_token",
  "actor_token",
  "device_code",
  "token",
  "password",
  "secret_id",
];

const PARAM_ALTERNATIVES = SECRET_PARAMS.join("|");

const VALUE_RULES: ReadonlyArray<readonly [RegExp, string]> = [
  // RFC 6750 §2.1 bearer and RFC 7617 basic credentials, as in an Authorization header. The
  // length floor spares prose ("bearer token is too long").
  [/\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{16,}=*/gi, `$1 ${REDACTED}`],
  // JWS / JWE compact serialization: base64url JSON headers always start with "eyJ".
  [/\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){1,3}/g, REDACTED],
  // `name=value` in a query string or form body. The lookbehind keeps `error_code=` and `grpc_code=`.
  [new RegExp(`(?<![A-Za-z0-9_])(${PARAM_ALTERNATIVES})=[^&\\s"',;]+`, "gi"), `$1=${REDACTED}`],
  // `"name": "value"` in a JSON body quoted into a message.
  [new RegExp(`("(?:${PARAM_ALTERNATIVES})"\\s*:\\s*)"(?:[^"\\\\]|\\\\.)*"`, "gi"), `$1"${REDACTED}"`],
  // Vault tokens: service, batch and recovery tokens (hvs., hvb., hvr.) and the pre-1.10 `s.` / `b.` forms.
  [/\bhv[sbr]\.[A-Za-z0-9_-]{20,}/g, REDACTED],
  [/(?<![A-Za-z0-9_.])[sb]\.[A-Za-z0-9]{24}\b/g, REDACTED],
  // Client secrets with a recognisable shape: Google (GOCSPX-), Microsoft Entra (…8Q~…), GitHub, Slack, Notion.
  [/\bGOCSPX-[A-Za-z0-9_-]{20,}/g, REDACTED],
  [/\b[A-Za-z0-9_-]{3}\dQ~[A-Za-z0-9_.~-]{30,}/g, REDACTED],
  [/\bgh[pousr]_[A-Za-z0-9]{30,}/g, REDACTED],
  [/\bxox[abprs]-[A-Za-z0-9-]{10,}/g, REDACTED],
  [/\b(?:secret|ntn)_[A-Za-z0-9]{30,}/g, REDACTED],
  // Credentials in a URL's user info (`postgres://user:password@host`).
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@/]+@/gi, `$1${REDACTED}@`],
];

/** Replaces every credential-looking substring of `text` with "[redacted]". */
export function redactText(text: string): string {
  let result = text;
  for (const [pattern, replacement] of VALUE_RULES) result = result.replace(pattern, replacement);
  return result;
}

/**
 * Redacts `text` and every exact occurrence of `knownSecrets` (the configured client secrets,
 * Vault credentials): those have no recognisable shape, but the broker knows them.
 */
export function createTextRedactor(knownSecrets: readonly string[] = []): (text: string) => string {
  // Short values would censor ordinary words; a real secret is never this short.
  const exact = [...new Set(knownSecrets.filter((secret) => secret.length >= 8))].sort((a, b) => b.length - a.length);
  if (exact.length === 0) return redactText;
  return (text) => {
    let result = text;
    for (const secret of exact) if (result.includes(secret)) result = result.split(secret).join(REDACTED);
    return redactText(result);
  };
}

/**
 * A deep copy of `value` with secret-named fields censored and every string passed through
 * `redact`. Cycles and depth beyond `maxDepth` become "[redacted]" rather than being walked.
 */
export function redactDeep(value: unknown, redact: (text: string) => string = redactText, maxDepth = 12): unknown {
  const seen = new WeakSet<object>();
  const walk = (current: unknown, depth: number): unknown => {
    if (typeof current === "string") return redact(current);
    if (typeof current !== "object" || current === null) return current;
    if (depth > maxDepth || seen.has(current)) return REDACTED;
    seen.add(current);
    if (Array.isArray(current)) return current.map((item) => walk(item, depth + 1));
    const copy: Record<string, unknown> = {};
    for (const [key, entry] of Object.entries(current)) {
      copy[key] = isSecretKey(key) && entry !== undefined && entry !== null ? REDACTED : walk(entry, depth + 1);
    }
    return copy;
  };
  return walk(value, 0);
}
