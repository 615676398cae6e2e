/** Providers in BROKER_CONFIG: per-kind defaults, overrides, ids, credentials and the sandbox. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load-config.js";
import type { ProviderConfig } from "../../src/config/types.js";

const DB = { DATABASE_URL: "postgres://db.internal/broker" };

function load(yaml: string, env: Record<string, string> = DB) {
  return loadConfig({ env: { ...env, BROKER_CONFIG: "/broker.yaml" }, readFile: (path) => (path === "/broker.yaml" ? yaml : "{}") });
}

function providers(yaml: string, env?: Record<string, string>): Record<string, ProviderConfig> {
  return Object.fromEntries(load(yaml, env).providers.map((provider) => [provider.id, provider]));
}

function problemsOf(yaml: string, env?: Record<string, string>): readonly string[] {
  try {
    load(yaml, env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

const lines = (...text: string[]) => text.join("\n");
const GOOGLE_API = "https://www.googleapis.com/auth";

describe("provider defaults", () => {
  it("fills Google from its kind, keyed by kind, with credentials from the environment", () => {
    const { google } = providers(lines("providers:", "  google:", "    clientId: ${GOOGLE_ID}", "    clientSecret: ${GOOGLE_SECRET}"), {
      ...DB,
      GOOGLE_ID: "123.apps.googleusercontent.com",
      GOOGLE_SECRET: "gsecret",
    });
    expect(google).toMatchObject({
      id: "google",
      kind: "google",
      displayName: "Google",
      clientId: "123.apps.googleusercontent.com",
      clientAuthMethod: "client_secret_post",
      endpoints: {},
      defaultScopes: ["openid", "email", "profile"],
      pkce: true,
      authorizationParams: {},
      defaultAccessTokenLifetimeSeconds: 3600,
      tenant: undefined,
      timeoutMs: 10_000,
      maxConcurrency: 16,
    });
    expect(google?.allowedScopes).toEqual(expect.arrayContaining(["openid", "email", "profile"]));
    expect(google?.clientSecret?.reveal()).toBe("gsecret");
  });

  it("fills YouTube, Microsoft and Notion from their kinds", () => {
    const byId = providers(lines("providers:", "  youtube: {}", "  microsoft: {}", "  notion: {}"));
    expect(byId["youtube"]).toMatchObject({ displayName: "YouTube", defaultScopes: [`${GOOGLE_API}/youtube.readonly`], pkce: true, clientAuthMethod: "client_secret_post" });
    expect(byId["youtube"]?.allowedScopes).toEqual(
      expect.arrayContaining([`${GOOGLE_API}/youtube`, `${GOOGLE_API}/youtube.readonly`, `${GOOGLE_API}/youtube.upload`, `${GOOGLE_API}/youtube.force-ssl`]),
    );
    expect(byId["microsoft"]).toMatchObject({
      displayName: "Microsoft",
      defaultScopes: ["openid", "profile", "email", "offline_access", "User.Read"],
      pkce: true,
      clientAuthMethod: "client_secret_post",
      tenant: "common",
      defaultAccessTokenLifetimeSeconds: 3600,
    });
    expect(byId["notion"]).toMatchObject({
      displayName: "Notion",
      defaultScopes: [],
      allowedScopes: [],
      pkce: false,
      clientAuthMethod: "client_secret_basic_raw",
      defaultAccessTokenLifetimeSeconds: 3600,
    });
  });

  it("leaves credentials optional", () => {
    const { notion } = providers(lines("providers:", "  notion: {}"));
    expect(notion?.clientId).toBeUndefined();
    expect(notion?.clientSecret).toBeUndefined();
  });

  it("accepts an oidc provider with discovery and an oauth2 provider with explicit endpoints", () => {
    const byId = providers(
      lines(
        "providers:",
        "  corp:",
        "    kind: oidc",
        "    endpoints: { issuer: 'https://id.example.com' }",
        "  gitlab:",
        "    kind: oauth2",
        "    endpoints:",
        "      authorization: https://gitlab.example.com/oauth/authorize",
        "      token: https://gitlab.example.com/oauth/token",
        "      api: https://gitlab.example.com/api/v4",
      ),
    );
    expect(byId["corp"]).toMatchObject({ kind: "oidc", clientAuthMethod: "client_secret_basic", defaultScopes: ["openid"], endpoints: { issuer: "https://id.example.com" } });
    expect(byId["gitlab"]).toMatchObject({
      kind: "oauth2",
      clientAuthMethod: "client_secret_basic",
      defaultScopes: [],
      endpoints: {
        authorization: "https://gitlab.example.com/oauth/authorize",
        token: "https://gitlab.example.com/oauth/token",
        api: "https://gitlab.example.com/api/v4",
      },
    });
  });

  it("needs an issuer or both explicit endpoints for oidc and oauth2", () => {
    expect(problemsOf(lines("providers:", "  corp: { kind: oidc }", "  other: { kind: oauth2, endpoints: { token: 'https://o/token' } }"))).toEqual([
      "providers.corp.endpoints: a oidc provider needs endpoints.issuer, or both endpoints.authorization and endpoints.token",
      "providers.other.endpoints: a oauth2 provider needs endpoints.issuer, or both endpoints.authorization and endpoints.token",
    ]);
  });
});

describe("provider overrides", () => {
  it("lets configuration override every default", () => {
    const { work } = providers(
      lines(
        "providers:",
        "  work:",
        "    kind: microsoft",
        "    displayName: Contoso 365",
        "    clientId: m",
        "    clientSecret: ${MS_SECRET}",
        "    clientAuthMethod: client_secret_basic",
        "    tenant: contoso.onmicrosoft.com",
        "    defaultScopes: [openid, offline_access, Mail.Read]",
        "    allowedScopes: [openid, offline_access]",
        "    pkce: false",
        "    authorizationParams: { prompt: select_account, domain_hint: contoso.com }",
        "    defaultAccessTokenLifetimeSeconds: 1800",
        "    timeoutMs: 2500",
        "    maxConcurrency: 4",
        "    endpoints: { authorization: 'http://127.0.0.1:9000/authorize', token: 'http://127.0.0.1:9000/token' }",
      ),
      { ...DB, MS_SECRET: "ms" },
    );
    expect(work).toMatchObject({
      id: "work",
      kind: "microsoft",
      displayName: "Contoso 365",
      clientAuthMethod: "client_secret_basic",
      tenant: "contoso.onmicrosoft.com",
      defaultScopes: ["openid", "offline_access", "Mail.Read"],
      // Default scopes are always requestable.
      allowedScopes: ["openid", "offline_access", "Mail.Read"],
      pkce: false,
      authorizationParams: { prompt: "select_account", domain_hint: "contoso.com" },
      defaultAccessTokenLifetimeSeconds: 1800,
      timeoutMs: 2500,
      maxConcurrency: 4,
      endpoints: { authorization: "http://127.0.0.1:9000/authorize", token: "http://127.0.0.1:9000/token" },
    });
  });

  it("reads a list of providers with ids, and an id that differs from the map key", () => {
    expect(Object.keys(providers(lines("providers:", "  - { id: google-work, kind: google }", "  - { id: notion, kind: notion }")))).toEqual([
      "google-work",
      "notion",
    ]);
    expect(Object.keys(providers(lines("providers:", "  personal: { id: google-personal, kind: google }")))).toEqual(["google-personal"]);
  });

  it("checks ids, kinds and settings", () => {
    expect(
      problemsOf(
        lines(
          "providers:",
          "  - { kind: google }",
          "  - { id: Google, kind: google }",
          "  - { id: dup, kind: notion }",
          "  - { id: dup, kind: notion }",
          "  - { id: x, kind: github }",
          "  - { id: y }",
          "  - { id: z, kind: google, clientAuthMethod: private_key_jwt, tenant: common, timeoutMs: 0, maxConcurrency: 1.5, pkce: 'yes' }",
        ),
      ),
    ).toEqual([
      "providers[0].id: required in a provider list (or key the providers by id)",
      'providers[1]: provider id "Google" must be 1-32 characters of a-z, 0-9 and "-", starting with a letter',
      'providers[3]: provider id "dup" is configured twice',
      "providers[4].kind: must be one of google, youtube, microsoft, notion, oidc, oauth2, sandbox",
      "providers[5].kind: must be one of google, youtube, microsoft, notion, oidc, oauth2, sandbox",
      "providers[6].clientAuthMethod: must be one of client_secret_basic, client_secret_basic_raw, client_secret_post, none",
      "providers[6].maxConcurrency: must be a whole number between 1 and 10000",
      "providers[6].pkce: must be true or false",
      "providers[6].tenant: only microsoft providers have a tenant",
      "providers[6].timeoutMs: must be a whole number between 1 and 300000",
    ]);
    expect(problemsOf(lines("providers:", `  ${"a".repeat(33)}: { kind: notion }`))).toEqual([
      `providers.${"a".repeat(33)}: provider id "${"a".repeat(33)}" must be 1-32 characters of a-z, 0-9 and "-", starting with a letter`,
    ]);
  });

  it("needs clientId with clientSecret, and a secret with clientId unless the client is public", () => {
    expect(problemsOf(lines("providers:", "  google: { clientSecret: '${S}' }", "  notion: { clientId: n }"), { ...DB, S: "s" })).toEqual([
      "providers.google.clientId: required when clientSecret is set",
      "providers.notion.clientSecret: required with clientId when clientAuthMethod is client_secret_basic_raw (use none for a public client)",
    ]);
    expect(providers(lines("providers:", "  corp: { kind: oidc, clientId: spa, clientAuthMethod: none, endpoints: { issuer: 'https://id' } }"))["corp"]).toMatchObject({
      clientId: "spa",
      clientSecret: undefined,
      clientAuthMethod: "none",
    });
  });
});

describe("sandbox provider", () => {
  it("is present on the embedded default and can be tuned", () => {
    const config = loadConfig({
      env: { BROKER_CONFIG: "/broker.yaml" },
      readFile: () => lines("providers:", "  sandbox:", "    displayName: Try it", "    defaultScopes: [openid]"),
    });
    expect(config.providers).toEqual([expect.objectContaining({ id: "sandbox", kind: "sandbox", displayName: "Try it", defaultScopes: ["openid"], endpoints: {} })]);
  });

  it("is refused while the sandbox is disabled", () => {
    expect(problemsOf(lines("providers:", "  sandbox: {}"))).toEqual(["providers.sandbox.kind: a sandbox provider needs sandbox.enabled: true"]);
  });

  it("keeps its id for the built-in provider", () => {
    expect(problemsOf(lines("sandbox: { enabled: true }", "providers:", "  sandbox: { kind: notion }"))).toEqual([
      'providers.sandbox: the id "sandbox" is taken by the built-in sandbox provider',
    ]);
  });
});
