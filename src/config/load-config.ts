/**
 * Builds the validated `Config` from `BROKER_CONFIG` (YAML) and the environment, once, at
 * start-up — the only reader of the environment. Every problem is collected and reported
 * together (`ConfigError.problems`), so an operator fixes a broken configuration in one pass.
 * Secrets are accepted only as `${ENV_VAR}` references and come out wrapped in `Secret`.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { policyProblems } from "../domain/policy.js";
import { PROVIDER_DEFAULTS, PROVIDER_KINDS } from "./provider-defaults.js";
import { createSecret } from "./secret.js";
import type {
  ClientAuthMethod,
  Config,
  JwtIssuerConfig,
  ListenAddress,
  ProviderConfig,
  ProviderKind,
  RateLimit,
  Secret,
  ServicePolicy,
  VaultConfig,
} from "./types.js";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.problems = problems;
  }
}

export interface LoadConfigOptions {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly readFile?: (path: string) => string;
}

type Env = Readonly<Record<string, string | undefined>>;
type YamlObject = Record<string, unknown>;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const CLIENT_AUTH_METHODS: readonly ClientAuthMethod[] = ["client_secret_basic", "client_secret_basic_raw", "client_secret_post", "none"];
const ENV_REFERENCE = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
const ENV_INTERPOLATION = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
const PROVIDER_ID = /^[a-z][a-z0-9-]{0,31}$/;

/** Collects problems with the path of the offending setting. */
class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
}

function isObject(value: unknown): value is YamlObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads one YAML mapping, reporting keys it does not know. */
class Section {
  constructor(
    private readonly problems: Problems,
    private readonly env: Env,
    readonly path: string,
    private readonly values: YamlObject,
    known: readonly string[],
  ) {
    for (const key of Object.keys(values)) {
      if (!known.includes(key)) problems.add(this.at(key), `unknown key (known: ${known.join(", ")})`);
    }
  }

  static of(problems: Problems, env: Env, path: string, value: unknown, known: readonly string[]): Section {
    if (value !== undefined && value !== null && !isObject(value)) problems.add(path, "must be a mapping");
    return new Section(problems, env, path, isObject(value) ? value : {}, known);
  }

  at(key: string): string {
    return this.path === "" ? key : `${this.path}.${key}`;
  }

  raw(key: string): unknown {
    return this.values[key];
  }

  has(key: string): boolean {
    return this.values[key] !== undefined && this.values[key] !== null;
  }

  /** A non-secret string; `${VAR}` references are interpolated. */
  string(key: string): string | undefined;
  string(key: string, fallback: string): string;
  string(key: string, fallback?: string): string | undefined {
    const value = this.values[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "string" && typeof value !== "number") {
      this.problems.add(this.at(key), "must be a string");
      return fallback;
    }
    return this.interpolate(key, String(value));
  }

  /** A secret: only `${ENV_VAR}` references are accepted, never literals. */
  secret(key: string): Secret | undefined {
    const value = this.values[key];
    if (value === undefined || value === null) return undefined;
    const match = typeof value === "string" ? ENV_REFERENCE.exec(value.trim()) : null;
    if (!match?.[1]) {
      this.problems.add(this.at(key), "must be a ${ENV_VAR} reference, not a literal secret");
      return undefined;
    }
    const resolved = this.env[match[1]];
    if (resolved === undefined || resolved === "") {
      this.problems.add(this.at(key), `references ${match[1]}, which is not set`);
      return undefined;
    }
    return createSecret(resolved);
  }

  integer(key: string, fallback: number, range: { min?: number; max?: number } = { min: 1 }): number {
    const value = this.values[key];
    if (value === undefined || value === null) return fallback;
    const min = range.min ?? 1;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || (range.max !== undefined && value > range.max)) {
      const bound = range.max === undefined ? `≥ ${min}` : `between ${min} and ${range.max}`;
      this.problems.add(this.at(key), `must be a whole number ${bound}`);
      return fallback;
    }
    return value;
  }

  number(key: string, fallback: number): number {
    const value = this.values[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      this.problems.add(this.at(key), "must be a number ≥ 0");
      return fallback;
    }
    return value;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.values[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "boolean") {
      this.problems.add(this.at(key), "must be true or false");
      return fallback;
    }
    return value;
  }

  strings(key: string, fallback: readonly string[]): readonly string[] {
    const value = this.values[key];
    if (value === undefined || value === null) return fallback;
    if (!Array.isArray(value) || value.some((item) => typeof item !== "string" || item.trim() === "")) {
      this.problems.add(this.at(key), "must be a list of non-empty strings");
      return fallback;
    }
    return value.map((item: string, index) => this.interpolate(`${key}[${index}]`, item));
  }

  stringMap(key: string): Readonly<Record<string, string>> {
    const value = this.values[key];
    if (value === undefined || value === null) return {};
    if (!isObject(value) || Object.values(value).some((v) => typeof v !== "string")) {
      this.problems.add(this.at(key), "must be a mapping of strings");
      return {};
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.interpolate(`${key}.${k}`, v as string)]));
  }

  section(key: string, known: readonly string[]): Section {
    return Section.of(this.problems, this.env, this.at(key), this.values[key], known);
  }

  private interpolate(key: string, value: string): string {
    return value.replace(ENV_INTERPOLATION, (_whole, name: string) => {
      const resolved = this.env[name];
      if (resolved === undefined) {
        this.problems.add(this.at(key), `references ${name}, which is not set`);
        return "";
      }
      return resolved;
    });
  }
}

function parseAddress(problems: Problems, variable: string, value: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    problems.add(variable, `"${value}" is not a host:port address (IPv6 in brackets, port 0-65535)`);
    return { host: "127.0.0.1", port: 0 };
  }
  return { host: match[1] ?? match[2] ?? "127.0.0.1", port };
}

function parseUrl(problems: Problems, path: string, value: string): URL | undefined {
  try {
    const url = new URL(value);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("scheme");
    return url;
  } catch {
    problems.add(path, `"${value}" is not an absolute http(s) URL`);
    return undefined;
  }
}

function readVersion(readFile: (path: string) => string): string {
  try {
    const pkg = JSON.parse(readFile(new URL("../../package.json", import.meta.url).pathname)) as { version?: string };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

const PROVIDER_KEYS = [
  "id",
  "kind",
  "displayName",
  "clientId",
  "clientSecret",
  "clientAuthMethod",
  "endpoints",
  "defaultScopes",
  "allowedScopes",
  "pkce",
  "authorizationParams",
  "defaultAccessTokenLifetimeSeconds",
  "tenant",
  "timeoutMs",
  "maxConcurrency",
];

function readProvider(problems: Problems, section: Section, id: string): ProviderConfig | undefined {
  const kind = section.string("kind");
  if (kind === undefined || !PROVIDER_KINDS.includes(kind as ProviderKind)) {
    problems.add(section.at("kind"), `must be one of ${PROVIDER_KINDS.join(", ")}`);
    return undefined;
  }
  if (!PROVIDER_ID.test(id)) problems.add(section.path, "provider ids are 1-32 characters of a-z, 0-9 and -, starting with a letter");
  const defaults = PROVIDER_DEFAULTS[kind as ProviderKind];
  const endpointSection = section.section("endpoints", ["issuer", "authorization", "token", "revocation", "userinfo", "api"]);
  const endpoint = (key: string) => {
    const value = endpointSection.string(key);
    if (value !== undefined) parseUrl(problems, endpointSection.at(key), value);
    return value;
  };
  const endpoints = {
    issuer: endpoint("issuer"),
    authorization: endpoint("authorization"),
    token: endpoint("token"),
    revocation: endpoint("revocation"),
    userinfo: endpoint("userinfo"),
    api: endpoint("api"),
  };
  if ((kind === "oidc" || kind === "oauth2") && !endpoints.issuer && !(endpoints.authorization && endpoints.token)) {
    problems.add(section.at("endpoints"), `a ${kind} provider needs endpoints.issuer or both endpoints.authorization and endpoints.token`);
  }
  const clientAuthMethod = section.string("clientAuthMethod", defaults.clientAuthMethod) as ClientAuthMethod;
  if (!CLIENT_AUTH_METHODS.includes(clientAuthMethod)) {
    problems.add(section.at("clientAuthMethod"), `must be one of ${CLIENT_AUTH_METHODS.join(", ")}`);
  }
  const clientId = section.string("clientId");
  const clientSecret = section.secret("clientSecret");
  if (section.has("clientSecret") && clientId === undefined) problems.add(section.at("clientId"), "required when clientSecret is set");
  const defaultScopes = section.strings("defaultScopes", defaults.defaultScopes);
  return {
    id,
    kind: kind as ProviderKind,
    displayName: section.string("displayName", defaults.displayName),
    clientId,
    clientSecret,
    clientAuthMethod,
    endpoints,
    defaultScopes,
    allowedScopes: section.strings("allowedScopes", [...new Set([...defaults.allowedScopes, ...defaultScopes])]),
    pkce: section.boolean("pkce", defaults.pkce),
    authorizationParams: section.stringMap("authorizationParams"),
    defaultAccessTokenLifetimeSeconds: section.integer("defaultAccessTokenLifetimeSeconds", defaults.defaultAccessTokenLifetimeSeconds),
    tenant: kind === "microsoft" ? section.string("tenant", defaults.tenant ?? "common") : section.string("tenant"),
    timeoutMs: section.integer("timeoutMs", 10_000),
    maxConcurrency: section.integer("maxConcurrency", 16),
  };
}

function readProviders(problems: Problems, root: Section, env: Env): ProviderConfig[] {
  const raw = root.raw("providers");
  const entries: Array<[string, Section]> = [];
  if (Array.isArray(raw)) {
    raw.forEach((item, index) => {
      const section = Section.of(problems, env, `providers[${index}]`, item, PROVIDER_KEYS);
      const id = section.string("id");
      if (id === undefined) problems.add(section.at("id"), "required in a provider list (or use a mapping keyed by id)");
      else entries.push([id, section]);
    });
  } else if (isObject(raw)) {
    for (const [id, value] of Object.entries(raw)) entries.push([id, Section.of(problems, env, `providers.${id}`, value, PROVIDER_KEYS)]);
  } else if (raw !== undefined && raw !== null) {
    problems.add("providers", "must be a mapping of provider id to settings");
  }
  const providers: ProviderConfig[] = [];
  for (const [id, section] of entries) {
    if (providers.some((p) => p.id === id)) problems.add(section.path, `provider id ${id} is configured twice`);
    const provider = readProvider(problems, section, id);
    if (provider) providers.push(provider);
  }
  return providers;
}

function readIssuers(problems: Problems, auth: Section, env: Env): JwtIssuerConfig[] {
  const raw = auth.raw("issuers");
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    problems.add(auth.at("issuers"), "must be a list");
    return [];
  }
  return raw.map((item, index) => {
    const s = Section.of(problems, env, `${auth.at("issuers")}[${index}]`, item, [
      "name",
      "issuer",
      "audiences",
      "jwksUrl",
      "staticKeys",
      "algorithms",
      "clockSkewSeconds",
      "principalKind",
      "rolesClaim",
      "subjectClaim",
    ]);
    const issuer = s.string("issuer", "");
    if (issuer === "") problems.add(s.at("issuer"), "required: the expected `iss` claim");
    const audiences = s.strings("audiences", []);
    if (audiences.length === 0) problems.add(s.at("audiences"), "at least one audience is required");
    const jwksUrl = s.string("jwksUrl");
    if (jwksUrl !== undefined) parseUrl(problems, s.at("jwksUrl"), jwksUrl);
    const staticKeys = s.strings("staticKeys", []);
    if ((jwksUrl === undefined) === (staticKeys.length === 0)) {
      problems.add(s.path, "set exactly one of jwksUrl or staticKeys");
    }
    const algorithms = s.strings("algorithms", ["RS256", "ES256", "EdDSA"]);
    for (const algorithm of algorithms) {
      if (algorithm.toLowerCase() === "none" || algorithm.toUpperCase().startsWith("HS")) {
        problems.add(s.at("algorithms"), `${algorithm} is refused: only asymmetric algorithms are accepted`);
      }
    }
    const principalKind = s.string("principalKind", "service");
    if (principalKind !== "user" && principalKind !== "service") problems.add(s.at("principalKind"), "must be user or service");
    return {
      name: s.string("name", issuer),
      issuer,
      audiences,
      jwksUrl,
      staticKeys,
      algorithms,
      clockSkewSeconds: s.integer("clockSkewSeconds", 30, { min: 0, max: 600 }),
      principalKind: principalKind === "user" ? "user" : "service",
      rolesClaim: s.string("rolesClaim", "roles"),
      subjectClaim: s.string("subjectClaim", "sub"),
    };
  });
}

function readPolicies(problems: Problems, root: Section, env: Env): ServicePolicy[] {
  const raw = root.raw("policies");
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    problems.add("policies", "must be a list");
    return [];
  }
  return raw.map((item, index) => {
    const s = Section.of(problems, env, `policies[${index}]`, item, ["service", "providers", "scopes", "actForUsers", "rpcs", "strict"]);
    return {
      service: s.string("service", ""),
      providers: s.strings("providers", []),
      scopes: s.strings("scopes", []),
      actForUsers: s.boolean("actForUsers", false),
      rpcs: s.strings("rpcs", []),
      strict: s.boolean("strict", false),
    };
  });
}

function readRateLimit(section: Section, key: string, fallback: RateLimit): RateLimit {
  const s = section.section(key, ["ratePerSecond", "burst"]);
  return { ratePerSecond: s.number("ratePerSecond", fallback.ratePerSecond), burst: s.integer("burst", fallback.burst) };
}

function readVault(problems: Problems, env: Env): VaultConfig | undefined {
  const address = env["VAULT_ADDR"];
  if (address === undefined || address === "") return undefined;
  parseUrl(problems, "VAULT_ADDR", address);
  const secretOf = (name: string) => {
    const value = env[name];
    return value === undefined || value === "" ? undefined : createSecret(value);
  };
  const token = secretOf("VAULT_TOKEN");
  const roleId = env["VAULT_ROLE_ID"] || undefined;
  const secretId = secretOf("VAULT_SECRET_ID");
  const kubernetesRole = env["VAULT_K8S_ROLE"] || undefined;
  const methods = [token !== undefined, roleId !== undefined || secretId !== undefined, kubernetesRole !== undefined].filter(Boolean).length;
  if (methods !== 1) {
    problems.add("VAULT_ADDR", "set exactly one Vault auth method: VAULT_TOKEN, VAULT_ROLE_ID + VAULT_SECRET_ID, or VAULT_K8S_ROLE");
  }
  if ((roleId === undefined) !== (secretId === undefined)) problems.add("VAULT_ROLE_ID", "AppRole needs both VAULT_ROLE_ID and VAULT_SECRET_ID");
  const createKey = env["VAULT_CREATE_KEY"] ?? "true";
  if (createKey !== "true" && createKey !== "false") problems.add("VAULT_CREATE_KEY", "must be true or false");
  const timeout = Number(env["VAULT_TIMEOUT_MS"] ?? "5000");
  if (!Number.isInteger(timeout) || timeout <= 0) problems.add("VAULT_TIMEOUT_MS", "must be a positive whole number of milliseconds");
  return {
    address,
    token,
    roleId,
    secretId,
    kubernetesRole,
    kubernetesTokenPath: env["VAULT_K8S_TOKEN_PATH"] ?? "/var/run/secrets/kubernetes.io/serviceaccount/token",
    namespace: env["VAULT_NAMESPACE"] || undefined,
    mount: env["VAULT_TRANSIT_MOUNT"] || "transit",
    key: env["VAULT_TRANSIT_KEY"] || "oauth-broker",
    createKey: createKey !== "false",
    timeoutMs: Number.isInteger(timeout) && timeout > 0 ? timeout : 5000,
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value) && !(value instanceof URL)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

const ROOT_KEYS = [
  "providers",
  "sandbox",
  "auth",
  "policies",
  "limits",
  "authorization",
  "tokens",
  "retention",
  "database",
  "shutdownGraceMs",
];

export function loadConfig(options: LoadConfigOptions): Config {
  const env = options.env;
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, "utf8"));
  const problems = new Problems();

  let document: unknown = {};
  const configPath = env["BROKER_CONFIG"];
  if (configPath) {
    try {
      document = parseYaml(readFile(configPath)) ?? {};
    } catch (error) {
      problems.add("BROKER_CONFIG", `cannot read ${configPath}: ${error instanceof Error ? error.message.split("\n")[0] : "unreadable"}`);
    }
  }
  const root = Section.of(problems, env, "", document, ROOT_KEYS);

  const nodeEnv = env["NODE_ENV"] || "development";
  const production = nodeEnv === "production";
  const logLevel = env["LOG_LEVEL"] || "info";
  if (!LOG_LEVELS.includes(logLevel)) problems.add("LOG_LEVEL", `must be one of ${LOG_LEVELS.join(", ")}`);
  const publicUrl = parseUrl(problems, "BROKER_PUBLIC_URL", env["BROKER_PUBLIC_URL"] || "http://127.0.0.1:8080") ?? new URL("http://127.0.0.1:8080");
  const databaseUrl = env["DATABASE_URL"] ? createSecret(env["DATABASE_URL"]) : undefined;
  const vault = readVault(problems, env);
  const allowLocalKeyringInProduction = env["BROKER_ALLOW_LOCAL_KEYRING"] === "true";
  if (production && vault === undefined && !allowLocalKeyringInProduction) {
    problems.add("VAULT_ADDR", "required when NODE_ENV=production (or set BROKER_ALLOW_LOCAL_KEYRING=true to accept the local keyring)");
  }

  const providers = readProviders(problems, root, env);
  const sandboxSection = root.section("sandbox", ["enabled"]);
  const sandboxEnabled = sandboxSection.boolean("enabled", databaseUrl === undefined);
  if (sandboxEnabled && production) problems.add("sandbox.enabled", "the sandbox provider is refused when NODE_ENV=production");
  if (sandboxEnabled && !providers.some((p) => p.kind === "sandbox")) {
    const defaults = PROVIDER_DEFAULTS.sandbox;
    providers.push({
      id: "sandbox",
      kind: "sandbox",
      displayName: defaults.displayName,
      clientId: undefined,
      clientSecret: undefined,
      clientAuthMethod: defaults.clientAuthMethod,
      endpoints: {},
      defaultScopes: defaults.defaultScopes,
      allowedScopes: defaults.allowedScopes,
      pkce: true,
      authorizationParams: {},
      defaultAccessTokenLifetimeSeconds: defaults.defaultAccessTokenLifetimeSeconds,
      tenant: undefined,
      timeoutMs: 10_000,
      maxConcurrency: 16,
    });
  }
  if (!sandboxEnabled && providers.some((p) => p.kind === "sandbox")) {
    problems.add("providers", "a sandbox provider is configured but sandbox.enabled is false");
  }

  const auth = root.section("auth", ["issuers", "protectMetrics"]);
  const issuers = readIssuers(problems, auth, env);
  const policies = readPolicies(problems, root, env);
  for (const problem of policyProblems({ policies, providers })) problems.list.push(problem);

  const limitsSection = root.section("limits", ["perPrincipal", "startAuthorizationPerUser"]);
  const perPrincipal = limitsSection.section("perPrincipal", ["token", "read", "write", "admin"]);
  const authorization = root.section("authorization", ["returnToAllowList", "sessionTtlSeconds"]);
  const returnToAllowList = authorization.strings("returnToAllowList", [`${publicUrl.origin}/`]);
  returnToAllowList.forEach((entry, index) => parseUrl(problems, `authorization.returnToAllowList[${index}]`, entry));
  const tokens = root.section("tokens", [
    "defaultMinValidForSeconds",
    "cacheMaxEntries",
    "proactiveRefreshWindowSeconds",
    "proactiveRefreshIntervalSeconds",
    "leaseSeconds",
  ]);
  const retention = root.section("retention", ["tombstoneDays", "auditDays", "needsReauthEraseDays"]);
  const database = root.section("database", ["poolSize"]);

  const config: Config = {
    nodeEnv,
    version: readVersion(readFile),
    grpcAddress: parseAddress(problems, "BROKER_GRPC_ADDR", env["BROKER_GRPC_ADDR"] || "127.0.0.1:50051"),
    httpAddress: parseAddress(problems, "BROKER_HTTP_ADDR", env["BROKER_HTTP_ADDR"] || "127.0.0.1:8080"),
    publicUrl,
    dataDir: resolve(env["BROKER_DATA_DIR"] || "./.broker-data"),
    databaseUrl,
    databasePoolSize: database.integer("poolSize", 10, { min: 1, max: 200 }),
    vault,
    allowLocalKeyringInProduction,
    logLevel,
    providers,
    sandbox: { enabled: sandboxEnabled },
    auth: { issuers, protectMetrics: auth.boolean("protectMetrics", false) },
    policies,
    limits: {
      perPrincipal: {
        token: readRateLimit(perPrincipal, "token", { ratePerSecond: 200, burst: 400 }),
        read: readRateLimit(perPrincipal, "read", { ratePerSecond: 50, burst: 100 }),
        write: readRateLimit(perPrincipal, "write", { ratePerSecond: 10, burst: 20 }),
        admin: readRateLimit(perPrincipal, "admin", { ratePerSecond: 10, burst: 20 }),
      },
      startAuthorizationPerUser: readRateLimit(limitsSection, "startAuthorizationPerUser", { ratePerSecond: 1, burst: 10 }),
    },
    authorization: {
      returnToAllowList,
      // RFC 9700 §4.7: state must expire; 10 minutes is the ceiling.
      sessionTtlSeconds: authorization.integer("sessionTtlSeconds", 600, { min: 30, max: 600 }),
    },
    tokens: {
      defaultMinValidForSeconds: tokens.integer("defaultMinValidForSeconds", 60, { min: 0, max: 3600 }),
      cacheMaxEntries: tokens.integer("cacheMaxEntries", 10_000),
      proactiveRefreshWindowSeconds: tokens.integer("proactiveRefreshWindowSeconds", 300),
      proactiveRefreshIntervalSeconds: tokens.integer("proactiveRefreshIntervalSeconds", 15),
      leaseSeconds: tokens.integer("leaseSeconds", 30, { min: 1, max: 600 }),
    },
    retention: {
      tombstoneDays: retention.integer("tombstoneDays", 30),
      auditDays: retention.integer("auditDays", 365),
      needsReauthEraseDays: retention.integer("needsReauthEraseDays", 90),
    },
    shutdownGraceMs: root.integer("shutdownGraceMs", 10_000, { min: 0, max: 600_000 }),
    sentryDsn: env["SENTRY_DSN"] ? createSecret(env["SENTRY_DSN"]) : undefined,
  };

  if (problems.list.length > 0) throw new ConfigError(problems.list);
  return deepFreeze(config);
}
