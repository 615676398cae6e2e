/**
 * What each template puts in the authorization request and where it sends it, with discovery
 * answered by a stub fetch; the registry's redirect URIs; and that creating clients does no I/O.
 */
import { describe, expect, it } from "vitest";
import type { ProviderConfig } from "../../src/config/types.js";
import { createProviderClient } from "../../src/providers/create-provider-client.js";
import { createProviderRegistry, providerRedirectUri } from "../../src/providers/provider-registry.js";
import { sandboxProviderConfig } from "../../src/providers/sandbox-provider.js";
import { createSecret } from "../../src/config/secret.js";
import { testProviderConfig } from "../support/peers/provider-config.js";
import { captureLogger } from "../support/log-capture.js";

const logger = captureLogger().logger;
const REDIRECT = "https://broker.example/oauth/callback/x";

/** Answers discovery for any issuer with that issuer's own metadata; records the URLs asked for. */
function discoveryFetch(seen: string[] = [], scopesSupported?: string[]): typeof fetch {
  return (async (input: URL) => {
    seen.push(input.href);
    const issuer = input.href.replace(/\/\.well-known\/openid-configuration$/, "");
    return Response.json({
      issuer,
      authorization_endpoint: `${issuer}/oauth2/authorize`,
      token_endpoint: `${issuer}/oauth2/token`,
      response_types_supported: ["code"],
      ...(scopesSupported === undefined ? {} : { scopes_supported: scopesSupported }),
    });
  }) as typeof fetch;
}

const noFetch = (async () => {
  throw new Error("no I/O expected");
}) as typeof fetch;

async function authorizationParams(config: ProviderConfig, fetch: typeof globalThis.fetch, input: { scopes?: string[]; forceConsent?: boolean } = {}) {
  const client = await createProviderClient(config, { logger, fetch });
  const url = await client.authorizationUrl({
    state: "st",
    scopes: input.scopes ?? [],
    redirectUri: REDIRECT,
    codeVerifier: "v".repeat(43),
    nonce: "nn",
    forceConsent: input.forceConsent,
  });
  return url;
}

describe("provider templates", () => {
  it("google: offline access and incremental consent at Google's issuer", async () => {
    const seen: string[] = [];
    const url = await authorizationParams(testProviderConfig({ id: "g", kind: "google", clientSecret: "s" }), discoveryFetch(seen), { forceConsent: true });
    expect(seen).toEqual(["https://accounts.google.com/.well-known/openid-configuration"]);
    // Google's known endpoints override the discovered ones.
    expect(url.origin + url.pathname).toBe("https://accounts.google.com/o/oauth2/v2/auth");
    expect(Object.fromEntries(url.searchParams)).toMatchObject({ access_type: "offline", include_granted_scopes: "true", prompt: "consent", scope: "openid" });
  });

  it("microsoft: the tenant's issuer and offline_access", async () => {
    const seen: string[] = [];
    const url = await authorizationParams(testProviderConfig({ id: "m", kind: "microsoft", clientSecret: "s", tenant: "contoso.onmicrosoft.com" }), discoveryFetch(seen), {
      scopes: ["Calendars.Read"],
    });
    expect(seen).toEqual(["https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"]);
    expect(url.searchParams.get("scope")).toBe("Calendars.Read openid profile offline_access");
    expect(url.searchParams.get("access_type")).toBeNull();
  });

  it("oidc: discovery from the configured issuer, explicit endpoints win, extra parameters pass but cannot override security ones", async () => {
    const url = await authorizationParams(
      testProviderConfig({
        id: "o",
        kind: "oidc",
        clientSecret: "s",
        endpoints: { issuer: "https://idp.example/realm", authorization: "https://login.idp.example/authorize" },
        authorizationParams: { audience: "api", state: "attacker", redirect_uri: "https://evil.example" },
      }),
      discoveryFetch(),
    );
    expect(url.origin + url.pathname).toBe("https://login.idp.example/authorize");
    expect(Object.fromEntries(url.searchParams)).toMatchObject({ audience: "api", state: "st", redirect_uri: REDIRECT, nonce: "nn" });
  });

  describe("offline access (OIDC Core §11)", () => {
    const oidc = testProviderConfig({ id: "o", kind: "oidc", clientSecret: "s", endpoints: { issuer: "https://idp.example" } });

    it("oidc: asks for offline_access with prompt=consent besides the caller's scopes when discovery advertises it", async () => {
      const url = await authorizationParams(oidc, discoveryFetch([], ["openid", "offline_access", "files.read"]), { scopes: ["files.read"] });
      expect(url.searchParams.get("scope")).toBe("files.read openid offline_access");
      expect(url.searchParams.get("prompt")).toBe("consent");
    });

    it("oidc: connects as it is when the provider does not advertise offline_access", async () => {
      for (const supported of [undefined, ["openid", "files.read"]]) {
        const url = await authorizationParams(oidc, discoveryFetch([], supported), { scopes: ["files.read"] });
        expect(url.searchParams.get("scope")).toBe("files.read openid");
        expect(url.searchParams.get("prompt")).toBeNull();
      }
    });

    it("oidc: a configured prompt still wins over the consent prompt", async () => {
      const url = await authorizationParams({ ...oidc, authorizationParams: { prompt: "select_account consent" } }, discoveryFetch([], ["offline_access"]));
      expect(url.searchParams.get("prompt")).toBe("select_account consent");
      expect(url.searchParams.get("scope")).toBe("openid offline_access");
    });

    it("google and microsoft keep their own way to a refresh token", async () => {
      const google = await authorizationParams(testProviderConfig({ id: "g", kind: "google", clientSecret: "s" }), discoveryFetch([], ["openid", "offline_access"]));
      expect(google.searchParams.get("scope")).toBe("openid");
      expect(google.searchParams.get("access_type")).toBe("offline");
      expect(google.searchParams.get("prompt")).toBeNull();
      const microsoft = await authorizationParams(testProviderConfig({ id: "m", kind: "microsoft", clientSecret: "s" }), discoveryFetch([], ["openid", "offline_access"]));
      expect(microsoft.searchParams.get("scope")).toBe("openid profile offline_access");
      expect(microsoft.searchParams.get("prompt")).toBeNull();
    });
  });

  it("oauth2: explicit endpoints without discovery, no openid, no nonce", async () => {
    const url = await authorizationParams(
      testProviderConfig({
        id: "o2",
        kind: "oauth2",
        clientSecret: "s",
        pkce: false,
        endpoints: { authorization: "https://gh.example/login/oauth/authorize", token: "https://gh.example/login/oauth/access_token" },
      }),
      noFetch,
      { scopes: ["repo"] },
    );
    expect(Object.fromEntries(url.searchParams)).toEqual({ client_id: "broker-client", response_type: "code", redirect_uri: REDIRECT, state: "st", scope: "repo" });
  });

  it("oauth2 without endpoints is provider_misconfigured", async () => {
    const client = await createProviderClient(testProviderConfig({ id: "o2", kind: "oauth2", clientSecret: "s" }), { logger, fetch: noFetch });
    await expect(client.authorizationUrl({ state: "s", scopes: [], redirectUri: REDIRECT, codeVerifier: "v".repeat(43) })).rejects.toMatchObject({
      code: "provider_misconfigured",
      reason: "ENDPOINTS_MISSING",
    });
  });

  it("refuses an http issuer that is not loopback", async () => {
    const client = await createProviderClient(
      testProviderConfig({ id: "o", kind: "oidc", clientSecret: "s", endpoints: { issuer: "http://idp.example" } }),
      { logger, fetch: discoveryFetch() },
    );
    await expect(client.authorizationUrl({ state: "s", scopes: [], redirectUri: REDIRECT, codeVerifier: "v".repeat(43) })).rejects.toMatchObject({
      code: "provider_misconfigured",
      reason: "INSECURE_ENDPOINT",
    });
  });

  it("a sandbox provider without a running sandbox is provider_misconfigured", async () => {
    await expect(createProviderClient(testProviderConfig({ id: "sb", kind: "sandbox", clientId: undefined }), { logger })).rejects.toMatchObject({
      code: "provider_misconfigured",
    });
  });
});

describe("scope spelling of token responses", () => {
  const client = (kind: ProviderConfig["kind"]) =>
    createProviderClient(testProviderConfig({ id: kind, kind, clientSecret: "s", pkce: kind !== "notion" }), { logger, fetch: noFetch });

  it("google and youtube: the OpenID shorthands under their full names", async () => {
    for (const kind of ["google", "youtube"] as const) {
      const canonical = (await client(kind)).canonicalScope;
      expect(canonical?.("https://www.googleapis.com/auth/userinfo.email")).toBe(canonical?.("email"));
      expect(canonical?.("https://www.googleapis.com/auth/userinfo.profile")).toBe(canonical?.("profile"));
      expect(canonical?.("https://www.googleapis.com/auth/calendar")).not.toBe(canonical?.("calendar"));
    }
  });

  it("microsoft: Graph permissions with or without their resource prefix, in any case", async () => {
    const canonical = (await client("microsoft")).canonicalScope;
    expect(canonical?.("https://graph.microsoft.com/mail.read")).toBe(canonical?.("Mail.Read"));
    expect(canonical?.("https://outlook.office.com/Mail.Read")).not.toBe(canonical?.("Mail.Read"));
  });

  it("notion and generic providers compare scopes as written", async () => {
    for (const kind of ["notion", "oidc", "oauth2"] as const) expect((await client(kind)).canonicalScope).toBeUndefined();
  });
});

describe("provider registry", () => {
  it("gives each provider its own redirect URI under the public URL", () => {
    expect(providerRedirectUri(new URL("http://127.0.0.1:8080"), "google")).toBe("http://127.0.0.1:8080/oauth/callback/google");
    expect(providerRedirectUri(new URL("https://auth.example.com/broker/"), "ms")).toBe("https://auth.example.com/broker/oauth/callback/ms");
    expect(providerRedirectUri(new URL("https://auth.example.com/broker"), "a b")).toBe("https://auth.example.com/broker/oauth/callback/a%20b");
  });

  it("builds every client without contacting any provider, and fills in the sandbox", async () => {
    const sandbox = { issuer: "http://127.0.0.1:8080/sandbox", clientId: "oauth-broker", clientSecret: createSecret("sb-secret") };
    const configs = [
      testProviderConfig({ id: "google", kind: "google", clientSecret: "s" }),
      testProviderConfig({ id: "notion", kind: "notion", clientSecret: "s", clientAuthMethod: "client_secret_basic_raw", pkce: false }),
      testProviderConfig({ id: "sandbox", kind: "sandbox", clientId: undefined }),
    ];
    const registry = await createProviderRegistry(configs, { logger, fetch: noFetch, publicUrl: new URL("http://127.0.0.1:8080"), sandbox });
    expect(registry.get("google")?.id).toBe("google");
    expect(registry.get("sandbox")?.id).toBe("sandbox");
    expect(registry.get("missing")).toBeUndefined();
    expect(registry.list().map((c) => c.id)).toEqual(["google", "notion", "sandbox"]);
    expect(registry.redirectUri("notion")).toBe("http://127.0.0.1:8080/oauth/callback/notion");
  });

  it("sandboxProviderConfig points the generic OIDC client at the sandbox with its credentials", () => {
    const base = testProviderConfig({ id: "sandbox", kind: "sandbox", clientId: undefined, endpoints: { token: "https://elsewhere" } });
    const config = sandboxProviderConfig(base, { issuer: "http://127.0.0.1:1/sandbox", clientId: "c", clientSecret: createSecret("x") });
    expect(config).toMatchObject({ id: "sandbox", kind: "sandbox", clientId: "c", clientAuthMethod: "client_secret_basic", pkce: true, endpoints: { issuer: "http://127.0.0.1:1/sandbox" } });
    expect(config.endpoints.token).toBeUndefined();
    expect(config.clientSecret?.reveal()).toBe("x");
  });
});
