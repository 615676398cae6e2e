/**
 * Builds the validated `Config` from the environment and `BROKER_CONFIG` (YAML), once, at
 * start-up (and again on SIGHUP) — the only reader of the environment. Every problem is
 * collected and reported together (`ConfigError.problems`), so an operator fixes a broken
 * configuration in one pass. Secrets are accepted only as `${ENV_VAR}` references and come out
 * wrapped in `Secret`. The result is deep-frozen: nothing changes it behind the loader's back.
 * docs/configuration.md is the reference for every setting read here.
 */
import { DEFAULT_MAX_REQUEST_BYTES } from "./limits.js";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { policyProblems } from "./policy-problems.js";
import { ConfigError, createProblems, type Problems } from "./config-error.js";
import { HTTP_URL_MESSAGE, parseHttpUrl } from "./http-url.js";
import { parseListenAddress } from "./listen-address.js";
import { publicUrlOfListener } from "./public-url.js";
import { readGrpcTls } from "./read-grpc-tls.js";
import { readIssuers } from "./read-issuers.js";
import { readProviders } from "./read-providers.js";
import { readVault, VAULT_YAML_KEYS } from "./read-vault.js";
import { createSecret } from "./secret.js";
import type { Config, ListenAddress, RateLimit, Secret, ServicePolicy } from "./types.js";
import { createYamlReader, type Env, type ReaderContext, type YamlReader } from "./yaml-reader.js";

export { ConfigError } from "./config-error.js";

export interface LoadConfigOptions {
  /** The process environment (`process.env`), or a fixture in tests. */
  readonly env: Env;
  /** Reads `BROKER_CONFIG` and package.json; defaults to the file system. */
  readonly readFile?: (path: string) => string;
}

export const LOG_LEVELS: readonly string[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
export const DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080";
export const DEFAULT_GRPC_ADDR = "127.0.0.1:50051";
export const DEFAULT_HTTP_ADDR = "127.0.0.1:8080";
export const DEFAULT_DATA_DIR = "./.broker-data";
/** RFC 9700 §2.1 / oauth-client-security.md §1: an authorization session lives ≤ 10 minutes. */
export const MAX_SESSION_TTL_SECONDS = 600;

const ROOT_KEYS = [
  "providers",
  "sandbox",
  "auth",
  "policies",
  "limits",
  "authorization",
  "tokens",
  "retention",
  "vault",
  "database",
  "shutdownGraceMs",
];
const POLICY_KEYS = ["service", "providers", "scopes", "actForUsers", "rpcs", "strict"];
const PACKAGE_JSON = fileURLToPath(new URL("../../package.json", import.meta.url));

/**
 * Loads and validates the configuration. Throws `ConfigError` listing every problem; never
 * returns a partly valid configuration.
 */
export function loadConfig(options: LoadConfigOptions): Config {
  const env = options.env;
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, "utf8"));
  const problems = createProblems();
  const context: ReaderContext = { problems, env };
  const value = (name: string) => (env[name] === undefined || env[name] === "" ? undefined : env[name]);

  const root = createYamlReader(context, "", readDocument(problems, value("BROKER_CONFIG"), readFile), ROOT_KEYS);

  const nodeEnv = value("NODE_ENV") ?? "development";
  const production = nodeEnv === "production";
  const logLevel = value("LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) problems.add("LOG_LEVEL", `must be one of ${LOG_LEVELS.join(", ")}`);

  const httpAddress = readAddress(problems, "BROKER_HTTP_ADDR", value("BROKER_HTTP_ADDR") ?? DEFAULT_HTTP_ADDR);
  const publicUrl = readPublicUrl(problems, value("BROKER_PUBLIC_URL") ?? publicUrlOfListener(httpAddress) ?? DEFAULT_PUBLIC_URL);
  const databaseUrl = readSecretUrl(problems, "DATABASE_URL", value("DATABASE_URL"), ["postgres:", "postgresql:"]);
  const sentryDsn = readSecretUrl(problems, "SENTRY_DSN", value("SENTRY_DSN"), ["https:", "http:"]);
  if (sentryDsn !== undefined && !isSentryDsn(sentryDsn.reveal())) {
    problems.add("SENTRY_DSN", "must be a Sentry DSN, http(s)://<public key>@<host>/<project id> (value not shown)");
  }
  const sentryEnvironment = value("SENTRY_ENVIRONMENT");
  if (sentryEnvironment !== undefined && !/^[^\s/]{1,64}$/.test(sentryEnvironment)) {
    problems.add("SENTRY_ENVIRONMENT", "must be at most 64 characters without spaces or slashes (Sentry's rule for environments)");
  }

  const vault = readVault(problems, env, root.section("vault", VAULT_YAML_KEYS));
  const allowLocalKeyring = value("BROKER_ALLOW_LOCAL_KEYRING") ?? "false";
  if (allowLocalKeyring !== "true" && allowLocalKeyring !== "false") problems.add("BROKER_ALLOW_LOCAL_KEYRING", "must be true or false");
  const allowLocalKeyringInProduction = allowLocalKeyring === "true";
  if (production && vault === undefined && !allowLocalKeyringInProduction) {
    problems.add("VAULT_ADDR", "required when NODE_ENV=production (or set BROKER_ALLOW_LOCAL_KEYRING=true to accept the local keyring)");
  }

  // The sandbox belongs to the embedded default; production never gets it implicitly.
  const sandboxSection = root.section("sandbox", ["enabled"]);
  const sandboxEnabled = sandboxSection.boolean("enabled", databaseUrl === undefined && !production);
  if (sandboxEnabled && production) problems.add(sandboxSection.at("enabled"), "the sandbox provider is refused when NODE_ENV=production");
  const providers = readProviders(context, root, sandboxEnabled);

  const auth = root.section("auth", ["issuers", "protectMetrics"]);
  const issuers = readIssuers(context, auth);
  const policies = readPolicies(context, root);
  problems.addLines(policyProblems({ policies, providers }));

  const database = root.section("database", ["poolSize", "callTimeoutMs"]);
  const config: Config = {
    nodeEnv,
    version: readVersion(readFile, env),
    grpcAddress: readAddress(problems, "BROKER_GRPC_ADDR", value("BROKER_GRPC_ADDR") ?? DEFAULT_GRPC_ADDR),
    grpcTls: readGrpcTls(problems, env),
    httpAddress,
    publicUrl,
    dataDir: resolve(value("BROKER_DATA_DIR") ?? DEFAULT_DATA_DIR),
    databaseUrl,
    databasePoolSize: database.integer("poolSize", 10, { min: 1, max: 500 }),
    databaseCallTimeoutMs: database.integer("callTimeoutMs", 1_000, { min: 50, max: 60_000 }),
    vault,
    allowLocalKeyringInProduction,
    logLevel,
    providers,
    sandbox: { enabled: sandboxEnabled },
    auth: { issuers, protectMetrics: auth.boolean("protectMetrics", false) },
    policies,
    limits: readLimits(root.section("limits", ["perPrincipal", "startAuthorizationPerUser", "maxRequestBytes"])),
    authorization: readAuthorization(context, root.section("authorization", ["returnToAllowList", "sessionTtlSeconds"]), publicUrl),
    tokens: readTokens(
      root.section("tokens", ["defaultMinValidForSeconds", "cacheMaxEntries", "proactiveRefreshWindowSeconds", "proactiveRefreshIntervalSeconds", "proactiveRefreshConcurrency", "proactiveRefreshPerSecond", "leaseSeconds", "providerPauseMaxSeconds", "rateLimitBackoffMaxSeconds", "maxWaitSeconds", "reissueFlushSeconds"]),
    ),
    retention: readRetention(root.section("retention", ["tombstoneDays", "auditDays", "needsReauthEraseDays", "changeFeedDays"])),
    shutdownGraceMs: root.integer("shutdownGraceMs", 10_000, { min: 0, max: 600_000 }),
    sentryDsn,
    sentryEnvironment,
  };

  if (problems.list.length > 0) throw new ConfigError(byPath(problems.list));
  return deepFreeze(config);
}

/**
 * Problems grouped by the setting they name: environment variables (upper case) first, then the
 * YAML paths; problems about one setting keep the order they were found in.
 */
function byPath(problems: readonly string[]): string[] {
  const pathOf = (problem: string) => problem.slice(0, Math.max(0, problem.indexOf(": ")));
  return [...problems].sort((a, b) => {
    const [left, right] = [pathOf(a), pathOf(b)];
    return left < right ? -1 : left > right ? 1 : 0;
  });
}

function readDocument(problems: Problems, path: string | undefined, readFile: (path: string) => string): unknown {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = readFile(path);
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    problems.add("BROKER_CONFIG", `cannot read ${path}${typeof code === "string" ? ` (${code})` : ""}`);
    return undefined;
  }
  try {
    return parseYaml(text);
  } catch (error) {
    // The parser's message names line and column; it quotes no more than the offending line.
    const first = error instanceof Error ? (error.message.split("\n")[0] ?? "") : "";
    problems.add("BROKER_CONFIG", `${path} is not valid YAML: ${first}`);
    return undefined;
  }
}

function readAddress(problems: Problems, variable: string, text: string): ListenAddress {
  const address = parseListenAddress(text);
  if (address !== undefined) return address;
  problems.add(variable, `"${text}" is not a host:port address (IPv6 in brackets, port 0-65535)`);
  return { host: "127.0.0.1", port: 0 };
}

function readPublicUrl(problems: Problems, text: string): URL {
  const url = parseHttpUrl(text);
  if (url === undefined) {
    problems.add("BROKER_PUBLIC_URL", `"${text}" ${HTTP_URL_MESSAGE}`);
    return new URL(DEFAULT_PUBLIC_URL);
  }
  if (url.search !== "" || url.hash !== "") problems.add("BROKER_PUBLIC_URL", "must not have a query or a fragment");
  return url;
}

/** A URL that carries credentials: checked, but never quoted in a problem. */
function readSecretUrl(problems: Problems, variable: string, text: string | undefined, protocols: readonly string[]): Secret | undefined {
  if (text === undefined) return undefined;
  let protocol: string | undefined;
  try {
    protocol = new URL(text).protocol;
  } catch {
    protocol = undefined;
  }
  if (protocol === undefined || !protocols.includes(protocol)) {
    problems.add(variable, `must be a ${protocols.map((p) => `${p}//`).join(" or ")} URL (value not shown)`);
  }
  return createSecret(text);
}

/**
 * Sentry ignores a malformed DSN silently (and reports nothing); refusing it at start-up makes the
 * mistake visible. A protocol problem is already reported by `readSecretUrl`.
 */
function isSentryDsn(text: string): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return true;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return true;
  return url.username !== "" && /^\/(?:.*\/)?[^/]+$/.test(url.pathname);
}

function readPolicies(context: ReaderContext, root: YamlReader): ServicePolicy[] {
  return root.items("policies").map((item) => {
    const reader = createYamlReader(context, item.path, item.value, POLICY_KEYS);
    return {
      service: reader.string("service", ""),
      providers: reader.strings("providers", []),
      scopes: reader.strings("scopes", []),
      actForUsers: reader.boolean("actForUsers", false),
      rpcs: reader.strings("rpcs", []),
      strict: reader.boolean("strict", false),
    };
  });
}

function readRateLimit(parent: YamlReader, key: string, fallback: RateLimit): RateLimit {
  const reader = parent.section(key, ["ratePerSecond", "burst"]);
  return { ratePerSecond: reader.positiveNumber("ratePerSecond", fallback.ratePerSecond), burst: reader.integer("burst", fallback.burst) };
}

function readLimits(limits: YamlReader): Config["limits"] {
  const perPrincipal = limits.section("perPrincipal", ["token", "read", "write", "admin"]);
  return {
    perPrincipal: {
      token: readRateLimit(perPrincipal, "token", { ratePerSecond: 200, burst: 400 }),
      read: readRateLimit(perPrincipal, "read", { ratePerSecond: 50, burst: 100 }),
      write: readRateLimit(perPrincipal, "write", { ratePerSecond: 10, burst: 20 }),
      admin: readRateLimit(perPrincipal, "admin", { ratePerSecond: 10, burst: 20 }),
    },
    startAuthorizationPerUser: readRateLimit(limits, "startAuthorizationPerUser", { ratePerSecond: 1, burst: 10 }),
    // Below 4 KiB not even a JWT-sized request fits; above 64 MiB one call could hold the heap.
    maxRequestBytes: limits.integer("maxRequestBytes", DEFAULT_MAX_REQUEST_BYTES, { min: 4096, max: 64 * 1024 * 1024 }),
  };
}

function readAuthorization(context: ReaderContext, authorization: YamlReader, publicUrl: URL): Config["authorization"] {
  const returnToAllowList = authorization.strings("returnToAllowList", [`${publicUrl.origin}/`]);
  if (returnToAllowList.length === 0) context.problems.add(authorization.at("returnToAllowList"), "needs at least one entry");
  returnToAllowList.forEach((entry, index) => {
    if (parseHttpUrl(entry) === undefined) context.problems.add(`${authorization.at("returnToAllowList")}[${index}]`, HTTP_URL_MESSAGE);
  });
  return {
    returnToAllowList,
    sessionTtlSeconds: authorization.integer("sessionTtlSeconds", MAX_SESSION_TTL_SECONDS, { min: 1, max: MAX_SESSION_TTL_SECONDS }),
  };
}

function readTokens(tokens: YamlReader): Config["tokens"] {
  return {
    defaultMinValidForSeconds: tokens.integer("defaultMinValidForSeconds", 60, { min: 0, max: 3_600 }),
    cacheMaxEntries: tokens.integer("cacheMaxEntries", 10_000, { min: 1, max: 10_000_000 }),
    proactiveRefreshWindowSeconds: tokens.integer("proactiveRefreshWindowSeconds", 300, { min: 1, max: 86_400 }),
    proactiveRefreshIntervalSeconds: tokens.integer("proactiveRefreshIntervalSeconds", 15, { min: 1, max: 3_600 }),
    // As many as one provider takes from a replica at once (providers' maxConcurrency default).
    proactiveRefreshConcurrency: tokens.integer("proactiveRefreshConcurrency", 16, { min: 1, max: 1_000 }),
    // 0: unpaced. A cap trades refresh rate for the CPU callers keep during a burst of due tokens.
    proactiveRefreshPerSecond: tokens.integer("proactiveRefreshPerSecond", 0, { min: 0, max: 100_000 }),
    // Short because its holder renews it: a dead holder is noticed within one lease.
    leaseSeconds: tokens.integer("leaseSeconds", 10, { min: 1, max: 600 }),
    providerPauseMaxSeconds: tokens.integer("providerPauseMaxSeconds", 300, { min: 1, max: 86_400 }),
    rateLimitBackoffMaxSeconds: tokens.integer("rateLimitBackoffMaxSeconds", 60, { min: 1, max: 3_600 }),
    maxWaitSeconds: tokens.integer("maxWaitSeconds", 30, { min: 1, max: 600 }),
    // At most 10: the audit trail promises that a crash loses no more than 10 s of counted repeats.
    reissueFlushSeconds: tokens.integer("reissueFlushSeconds", 10, { min: 1, max: 10 }),
  };
}

function readRetention(retention: YamlReader): Config["retention"] {
  return {
    tombstoneDays: retention.integer("tombstoneDays", 30),
    auditDays: retention.integer("auditDays", 365),
    needsReauthEraseDays: retention.integer("needsReauthEraseDays", 90),
    changeFeedDays: retention.integer("changeFeedDays", 7),
  };
}

/** package.json's version; `npm_package_version` when the file is not where the build put it. */
function readVersion(readFile: (path: string) => string, env: Env): string {
  try {
    const parsed: unknown = JSON.parse(readFile(PACKAGE_JSON));
    const version = (parsed as { version?: unknown } | null)?.version;
    if (typeof version === "string" && version !== "") return version;
  } catch {
    // Fall through: a missing version must not stop the broker.
  }
  return env["npm_package_version"] || "0.0.0";
}

function deepFreeze<T>(value: T): T {
  // URL keeps its state in private fields: freezing it would not make it immutable.
  if (typeof value === "object" && value !== null && !(value instanceof URL) && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
