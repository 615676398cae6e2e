/**
 * `providers:` of `BROKER_CONFIG`: a list (each item with an `id`) or a mapping keyed by id.
 * Each entry starts from its kind's defaults (`provider-defaults.ts`), so a Google provider
 * needs only `clientId` and `clientSecret`. Endpoints stay as configured: the templates in
 * `providers/` supply the well-known ones and the sandbox's, which exist only at run time.
 */
import {
  PROVIDER_DEFAULTS,
  PROVIDER_KINDS,
  PROVIDER_MAX_CONCURRENCY,
  PROVIDER_TIMEOUT_MS,
  isProviderKind,
} from "./provider-defaults.js";
import { HTTP_URL_MESSAGE, parseHttpUrl } from "./http-url.js";
import type { ClientAuthMethod, ProviderConfig, ProviderEndpoints } from "./types.js";
import { createYamlReader, isMapping, type ReaderContext, type YamlReader } from "./yaml-reader.js";

export const PROVIDER_ID = /^[a-z][a-z0-9-]{0,31}$/;

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
const ENDPOINT_KEYS = ["issuer", "authorization", "token", "revocation", "userinfo", "api"] as const;
const CLIENT_AUTH_METHODS: readonly ClientAuthMethod[] = ["client_secret_basic", "client_secret_basic_raw", "client_secret_post", "none"];
/**
 * Authorization request parameters the broker sets itself: overriding them would break the
 * flow's protections (state and PKCE, RFC 9700 §2.1) or its redirect URI.
 */
const RESERVED_AUTHORIZATION_PARAMS = new Set([
  "client_id",
  "response_type",
  "redirect_uri",
  "state",
  "scope",
  "nonce",
  "code_challenge",
  "code_challenge_method",
]);

/** The built-in sandbox provider added when `sandbox.enabled` (endpoints come at run time). */
export function sandboxProvider(): ProviderConfig {
  return defaultsFor("sandbox", "sandbox");
}

/**
 * Reads every configured provider. With `sandboxEnabled` the sandbox provider is added unless
 * one is configured; without it a configured sandbox provider is a problem.
 */
export function readProviders(context: ReaderContext, root: YamlReader, sandboxEnabled: boolean): ProviderConfig[] {
  const { problems } = context;
  const raw = root.raw("providers");
  const entries: Array<{ id: string | undefined; reader: YamlReader }> = [];
  if (Array.isArray(raw)) {
    for (const item of root.items("providers")) {
      const reader = createYamlReader(context, item.path, item.value, PROVIDER_KEYS);
      const id = reader.optionalString("id");
      if (id === undefined) problems.add(reader.at("id"), "required in a provider list (or key the providers by id)");
      entries.push({ id, reader });
    }
  } else if (isMapping(raw)) {
    for (const [key, value] of Object.entries(raw)) {
      const reader = createYamlReader(context, root.at(`providers.${key}`), value, PROVIDER_KEYS);
      entries.push({ id: reader.optionalString("id") ?? key, reader });
    }
  } else if (raw !== undefined) {
    problems.add("providers", "must be a mapping of provider id to settings, or a list");
  }

  const providers: ProviderConfig[] = [];
  const seen = new Set<string>();
  for (const { id, reader } of entries) {
    if (id === undefined) continue;
    if (!PROVIDER_ID.test(id)) {
      problems.add(reader.path, `provider id "${id}" must be 1-32 characters of a-z, 0-9 and "-", starting with a letter`);
    }
    if (seen.has(id)) problems.add(reader.path, `provider id "${id}" is configured twice`);
    seen.add(id);
    const provider = readProvider(context, reader, id);
    if (provider === undefined) continue;
    if (provider.kind === "sandbox" && !sandboxEnabled) {
      problems.add(reader.at("kind"), "a sandbox provider needs sandbox.enabled: true");
    }
    providers.push(provider);
  }
  if (sandboxEnabled && !providers.some((provider) => provider.kind === "sandbox")) {
    if (seen.has("sandbox")) problems.add("providers.sandbox", 'the id "sandbox" is taken by the built-in sandbox provider');
    providers.push(sandboxProvider());
  }
  return providers;
}

function readProvider(context: ReaderContext, reader: YamlReader, id: string): ProviderConfig | undefined {
  const { problems } = context;
  // A provider keyed by its kind (`google:`) needs no `kind:`.
  const kind = reader.optionalString("kind") ?? (isProviderKind(id) ? id : undefined);
  if (kind === undefined || !isProviderKind(kind)) {
    problems.add(reader.at("kind"), `must be one of ${PROVIDER_KINDS.join(", ")}`);
    return undefined;
  }
  const defaults = defaultsFor(id, kind);
  const endpoints = readEndpoints(context, reader.section("endpoints", ENDPOINT_KEYS));
  if ((kind === "oidc" || kind === "oauth2") && endpoints.issuer === undefined && (endpoints.authorization === undefined || endpoints.token === undefined)) {
    problems.add(reader.at("endpoints"), `a ${kind} provider needs endpoints.issuer, or both endpoints.authorization and endpoints.token`);
  }

  const clientAuthMethod = reader.string("clientAuthMethod", defaults.clientAuthMethod);
  if (!(CLIENT_AUTH_METHODS as readonly string[]).includes(clientAuthMethod)) {
    problems.add(reader.at("clientAuthMethod"), `must be one of ${CLIENT_AUTH_METHODS.join(", ")}`);
  }
  const clientId = reader.optionalString("clientId");
  const clientSecret = reader.secret("clientSecret");
  if (reader.has("clientSecret") && clientId === undefined) problems.add(reader.at("clientId"), "required when clientSecret is set");
  if (clientId !== undefined && !reader.has("clientSecret") && clientAuthMethod !== "none" && kind !== "sandbox") {
    problems.add(reader.at("clientSecret"), `required with clientId when clientAuthMethod is ${clientAuthMethod} (use none for a public client)`);
  }

  const tenant = reader.optionalString("tenant");
  if (tenant !== undefined && kind !== "microsoft") problems.add(reader.at("tenant"), "only microsoft providers have a tenant");
  if (tenant !== undefined && !/^[A-Za-z0-9.-]+$/.test(tenant)) {
    problems.add(reader.at("tenant"), "must be common, organizations, consumers, a tenant id or a domain");
  }

  const authorizationParams = reader.stringMap(
    "authorizationParams",
    "authorization parameters travel through the browser, so they can never carry one",
  );
  for (const name of Object.keys(authorizationParams)) {
    if (RESERVED_AUTHORIZATION_PARAMS.has(name)) {
      problems.add(`${reader.at("authorizationParams")}.${name}`, "is set by the broker (use defaultScopes for scope)");
    }
  }

  const defaultScopes = reader.strings("defaultScopes", defaults.defaultScopes);
  return {
    id,
    kind,
    displayName: reader.string("displayName", defaults.displayName),
    clientId,
    clientSecret,
    clientAuthMethod: clientAuthMethod as ClientAuthMethod,
    endpoints,
    defaultScopes,
    // Default scopes are always requestable.
    allowedScopes: union(reader.strings("allowedScopes", defaults.allowedScopes), defaultScopes),
    pkce: reader.boolean("pkce", defaults.pkce),
    authorizationParams,
    defaultAccessTokenLifetimeSeconds: reader.integer("defaultAccessTokenLifetimeSeconds", defaults.defaultAccessTokenLifetimeSeconds, {
      min: 1,
      max: 86_400,
    }),
    tenant: tenant ?? defaults.tenant,
    timeoutMs: reader.integer("timeoutMs", defaults.timeoutMs, { min: 1, max: 300_000 }),
    maxConcurrency: reader.integer("maxConcurrency", defaults.maxConcurrency, { min: 1, max: 10_000 }),
  };
}

function readEndpoints(context: ReaderContext, reader: YamlReader): ProviderEndpoints {
  const endpoints: Partial<Record<(typeof ENDPOINT_KEYS)[number], string>> = {};
  for (const key of ENDPOINT_KEYS) {
    const value = reader.optionalString(key);
    if (value === undefined) continue;
    if (parseHttpUrl(value) === undefined) context.problems.add(reader.at(key), HTTP_URL_MESSAGE);
    else endpoints[key] = value;
  }
  return endpoints;
}

function defaultsFor(id: string, kind: ProviderConfig["kind"]): ProviderConfig {
  const defaults = PROVIDER_DEFAULTS[kind];
  return {
    id,
    kind,
    displayName: defaults.displayName,
    clientId: undefined,
    clientSecret: undefined,
    clientAuthMethod: defaults.clientAuthMethod,
    endpoints: {},
    defaultScopes: defaults.defaultScopes,
    allowedScopes: union(defaults.allowedScopes, defaults.defaultScopes),
    pkce: defaults.pkce,
    authorizationParams: {},
    defaultAccessTokenLifetimeSeconds: defaults.defaultAccessTokenLifetimeSeconds,
    tenant: defaults.tenant,
    timeoutMs: PROVIDER_TIMEOUT_MS,
    maxConcurrency: PROVIDER_MAX_CONCURRENCY,
  };
}

function union(first: readonly string[], second: readonly string[]): readonly string[] {
  return [...new Set([...first, ...second])];
}
