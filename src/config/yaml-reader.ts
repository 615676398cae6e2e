/**
 * Typed reading of one YAML mapping of `BROKER_CONFIG`. Every reader reports keys it does not
 * know (a typo must not silently fall back to a default), reports a wrong value with its path and
 * returns the default so loading goes on and every problem is found in one pass. Strings may use
 * `${ENV_VAR}` interpolation; secrets are accepted only as a whole `${ENV_VAR}` reference so no
 * secret ever sits in a file that gets committed, copied into images or pasted into tickets.
 */
import type { Problems } from "./config-error.js";
import { createSecret } from "./secret.js";
import type { Secret } from "./types.js";

export type Env = Readonly<Record<string, string | undefined>>;

export interface ReaderContext {
  readonly problems: Problems;
  readonly env: Env;
}

export interface IntegerRange {
  /** Smallest accepted value (default 1: counts, sizes and durations are positive). */
  readonly min?: number;
  readonly max?: number;
}

export interface YamlReader {
  /** Dotted path of this mapping ("" for the document root). */
  readonly path: string;
  /** Dotted path of `key` in this mapping, for problems. */
  at(key: string): string;
  /** Whether `key` is present with a non-null value. */
  has(key: string): boolean;
  raw(key: string): unknown;
  /** A non-secret string, `${VAR}` interpolated; undefined when absent. */
  optionalString(key: string): string | undefined;
  /** A non-secret string, `${VAR}` interpolated; `fallback` when absent. */
  string(key: string, fallback: string): string;
  /** A secret: only a whole `${ENV_VAR}` reference to a set variable is accepted. */
  secret(key: string): Secret | undefined;
  integer(key: string, fallback: number, range?: IntegerRange): number;
  /** A number > 0 that may have a fraction (rates). */
  positiveNumber(key: string, fallback: number): number;
  boolean(key: string, fallback: boolean): boolean;
  /** A list of non-empty strings, each `${VAR}` interpolated. */
  strings(key: string, fallback: readonly string[]): readonly string[];
  /**
   * A mapping of string to string, each value interpolated. Keys that name a secret are refused
   * with `secretRefusal` as the reason: these values are not wrapped in `Secret`.
   */
  stringMap(key: string, secretRefusal: string): Readonly<Record<string, string>>;
  /** The nested mapping at `key` (empty when absent). */
  section(key: string, known: readonly string[]): YamlReader;
  /** The items of the list at `key`, each with its path (`key[i]`). */
  items(key: string): ReadonlyArray<{ readonly path: string; readonly value: unknown }>;
}

export const SECRET_REFERENCE_MESSAGE = "must be a ${ENV_VAR} reference, not a literal secret";

const ENV_REFERENCE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
const ENV_INTERPOLATION = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
/** Words that make a name secret wherever they appear. */
const SECRET_WORDS = new Set(["secret", "password", "passwd", "passphrase"]);
/** Words that make a name secret when they end it (`access_token`, `apiKey`, not `token_access_type`). */
const SECRET_LAST_WORDS = new Set(["token", "key", "apikey", "credential", "credentials", "assertion"]);

/**
 * Whether a key's name says it holds a secret: `clientSecret`, `db_password`, `api-key`,
 * `access_token`. Names where "token" or "key" only qualifies another word are not secrets
 * (`token_access_type`, `staticKeys`, `defaultAccessTokenLifetimeSeconds`).
 */
export function isSecretName(name: string): boolean {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[\s_.-]+/)
    .filter((word) => word !== "");
  const last = words[words.length - 1];
  return words.some((word) => SECRET_WORDS.has(word)) || (last !== undefined && SECRET_LAST_WORDS.has(last));
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Reads `value` (a YAML mapping, or absent) at `path`, reporting keys outside `known` at once.
 * A value that is present but not a mapping is a problem and reads as empty.
 */
export function createYamlReader(context: ReaderContext, path: string, value: unknown, known: readonly string[]): YamlReader {
  const { problems, env } = context;
  const at = (key: string) => (path === "" ? key : `${path}.${key}`);
  if (value !== undefined && value !== null && !isMapping(value)) problems.add(path === "" ? "BROKER_CONFIG" : path, "must be a mapping");
  const values: Record<string, unknown> = isMapping(value) ? value : {};
  for (const key of Object.keys(values)) {
    if (!known.includes(key)) problems.add(at(key), `unknown key (known here: ${known.join(", ")})`);
  }

  const present = (key: string): unknown => (values[key] === null ? undefined : values[key]);

  /** Replaces each `${VAR}`; an unset variable is a problem naming it. */
  function interpolate(where: string, text: string): string {
    return text.replace(ENV_INTERPOLATION, (_whole, name: string) => {
      const resolved = env[name];
      if (resolved === undefined) {
        problems.add(where, `references ${name}, which is not set`);
        return "";
      }
      return resolved;
    });
  }

  function optionalString(key: string): string | undefined {
    const raw = present(key);
    if (raw === undefined) return undefined;
    if (typeof raw !== "string" && typeof raw !== "number") {
      problems.add(at(key), "must be a string");
      return undefined;
    }
    return interpolate(at(key), String(raw));
  }

  const reader: YamlReader = {
    path,
    at,
    has: (key) => present(key) !== undefined,
    raw: (key) => present(key),
    optionalString,
    string: (key, fallback) => optionalString(key) ?? fallback,

    secret(key) {
      const raw = present(key);
      if (raw === undefined) return undefined;
      const name = typeof raw === "string" ? ENV_REFERENCE.exec(raw.trim())?.[1] : undefined;
      if (name === undefined) {
        problems.add(at(key), SECRET_REFERENCE_MESSAGE);
        return undefined;
      }
      const resolved = env[name];
      if (resolved === undefined || resolved === "") {
        problems.add(at(key), `references ${name}, which is not set`);
        return undefined;
      }
      return createSecret(resolved);
    },

    integer(key, fallback, range = {}) {
      const raw = present(key);
      if (raw === undefined) return fallback;
      const min = range.min ?? 1;
      const { max } = range;
      if (typeof raw !== "number" || !Number.isSafeInteger(raw) || raw < min || (max !== undefined && raw > max)) {
        problems.add(at(key), max === undefined ? `must be a whole number ≥ ${min}` : `must be a whole number between ${min} and ${max}`);
        return fallback;
      }
      return raw;
    },

    positiveNumber(key, fallback) {
      const raw = present(key);
      if (raw === undefined) return fallback;
      if (typeof raw !== "number" || !Number.isFinite(raw) || raw <= 0) {
        problems.add(at(key), "must be a number > 0");
        return fallback;
      }
      return raw;
    },

    boolean(key, fallback) {
      const raw = present(key);
      if (raw === undefined) return fallback;
      if (typeof raw !== "boolean") {
        problems.add(at(key), "must be true or false");
        return fallback;
      }
      return raw;
    },

    strings(key, fallback) {
      const raw = present(key);
      if (raw === undefined) return fallback;
      if (!Array.isArray(raw) || raw.some((item) => typeof item !== "string" || item.trim() === "")) {
        problems.add(at(key), "must be a list of non-empty strings");
        return fallback;
      }
      return raw.map((item: string, index) => interpolate(`${at(key)}[${index}]`, item));
    },

    stringMap(key, secretRefusal) {
      const raw = present(key);
      if (raw === undefined) return {};
      if (!isMapping(raw)) {
        problems.add(at(key), "must be a mapping of names to strings");
        return {};
      }
      const result: Record<string, string> = {};
      for (const [name, item] of Object.entries(raw)) {
        const where = `${at(key)}.${name}`;
        if (isSecretName(name)) problems.add(where, `looks like a secret: ${secretRefusal}`);
        else if (typeof item !== "string" && typeof item !== "number" && typeof item !== "boolean") problems.add(where, "must be a string");
        else result[name] = interpolate(where, String(item));
      }
      return result;
    },

    section: (key, keys) => createYamlReader(context, at(key), present(key), keys),

    items(key) {
      const raw = present(key);
      if (raw === undefined) return [];
      if (!Array.isArray(raw)) {
        problems.add(at(key), "must be a list");
        return [];
      }
      return raw.map((item: unknown, index) => ({ path: `${at(key)}[${index}]`, value: item }));
    },
  };
  return reader;
}
