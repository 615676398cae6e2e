/** Configuration: defaults, every problem in one list, secrets that never print. */
import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load-config.js";

function load(env: Record<string, string>, yaml?: string) {
  return loadConfig({
    env: yaml === undefined ? env : { ...env, BROKER_CONFIG: "/config.yaml" },
    readFile: (path) => {
      if (path === "/config.yaml" && yaml !== undefined) return yaml;
      if (path.endsWith("package.json")) return JSON.stringify({ version: "9.9.9" });
      throw new Error(`ENOENT ${path}`);
    },
  });
}

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("gives the embedded defaults for an empty environment", () => {
    const config = load({});
    expect(config.grpcAddress).toEqual({ host: "127.0.0.1", port: 50051 });
    expect(config.httpAddress).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.vault).toBeUndefined();
    expect(config.sandbox.enabled).toBe(true);
    expect(config.providers.map((p) => p.id)).toEqual(["sandbox"]);
    expect(config.authorization.returnToAllowList).toEqual(["http://127.0.0.1:8080/"]);
    expect(config.authorization.sessionTtlSeconds).toBe(600);
    expect(config.version).toBe("9.9.9");
    expect(Object.isFrozen(config.limits.perPrincipal.token)).toBe(true);
  });

  it("turns the sandbox off when a real database is configured", () => {
    const config = load({ DATABASE_URL: "postgres://u:p@db/broker" });
    expect(config.sandbox.enabled).toBe(false);
    expect(config.providers).toEqual([]);
  });

  it("reports every problem in one list", () => {
    const problems = problemsOf(() =>
      load(
        { BROKER_GRPC_ADDR: "localhost", BROKER_HTTP_ADDR: "[::1]:99999" },
        [
          "providers:",
          "  google:",
          "    kind: google",
          "    clientId: abc",
          "    clientSecret: plain-text-secret",
          "    clientSecrte: typo",
          "  notion:",
          "    kind: notion",
          "    clientId: n",
          "    clientSecret: ${NOTION_SECRET}",
          "  weird:",
          "    kind: nope",
          "authorization:",
          "  sessionTtlSeconds: 3600",
        ].join("\n"),
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        "providers.google.clientSecret: must be a ${ENV_VAR} reference, not a literal secret",
        expect.stringMatching(/^providers\.google\.clientSecrte: unknown key/),
        "providers.notion.clientSecret: references NOTION_SECRET, which is not set",
        expect.stringMatching(/^providers\.weird\.kind: must be one of/),
        expect.stringMatching(/^BROKER_GRPC_ADDR: "localhost" is not a host:port address/),
        expect.stringMatching(/^BROKER_HTTP_ADDR:/),
        expect.stringMatching(/^authorization\.sessionTtlSeconds: must be a whole number between \d+ and 600/),
      ]),
    );
    expect(problems.join("\n")).not.toContain("plain-text-secret");
  });

  it("resolves secrets from the environment and never prints them", () => {
    const config = load(
      { GOOGLE_SECRET: "g-very-secret", DATABASE_URL: "postgres://u:db-password@db/x", VAULT_ADDR: "http://vault:8200", VAULT_TOKEN: "s.vault-token" },
      "providers:\n  google:\n    kind: google\n    clientId: ${GOOGLE_ID}\n    clientSecret: ${GOOGLE_SECRET}\n".replace("${GOOGLE_ID}", "id-1"),
    );
    const google = config.providers.find((p) => p.id === "google");
    expect(google?.clientSecret?.reveal()).toBe("g-very-secret");
    const printed = `${JSON.stringify(config)}\n${inspect(config, { depth: 10 })}\n${String(google?.clientSecret)}`;
    for (const secret of ["g-very-secret", "db-password", "s.vault-token"]) expect(printed).not.toContain(secret);
    expect(config.vault).toMatchObject({ mount: "transit", key: "oauth-broker", createKey: true });
  });

  it("fills provider defaults per kind and lets configuration override them", () => {
    const config = load(
      { DATABASE_URL: "postgres://x/y", S: "s" },
      [
        "providers:",
        "  microsoft:",
        "    kind: microsoft",
        "    clientId: m",
        "    clientSecret: ${S}",
        "    tenant: organizations",
        "  notion:",
        "    kind: notion",
        "  corp:",
        "    kind: oidc",
        "    endpoints: { issuer: 'https://id.example.com' }",
        "    defaultScopes: [openid, email]",
        "    clientAuthMethod: client_secret_post",
      ].join("\n"),
    );
    const byId = Object.fromEntries(config.providers.map((p) => [p.id, p]));
    expect(byId["microsoft"]).toMatchObject({ tenant: "organizations", pkce: true, clientAuthMethod: "client_secret_post" });
    expect(byId["microsoft"]?.defaultScopes).toContain("offline_access");
    expect(byId["notion"]).toMatchObject({ pkce: false, clientAuthMethod: "client_secret_basic_raw", defaultAccessTokenLifetimeSeconds: 3600 });
    expect(byId["corp"]).toMatchObject({ clientAuthMethod: "client_secret_post", defaultScopes: ["openid", "email"] });
  });

  it("refuses what production must not run with", () => {
    const problems = problemsOf(() => load({ NODE_ENV: "production" }, "sandbox:\n  enabled: true\n"));
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^VAULT_ADDR: required when NODE_ENV=production/),
        "sandbox.enabled: the sandbox provider is refused when NODE_ENV=production",
      ]),
    );
    expect(() => load({ NODE_ENV: "production", DATABASE_URL: "postgres://x/y", BROKER_ALLOW_LOCAL_KEYRING: "true" })).not.toThrow();
  });

  it("validates issuers and policies", () => {
    const problems = problemsOf(() =>
      load(
        { DATABASE_URL: "postgres://x/y" },
        [
          "auth:",
          "  issuers:",
          "    - issuer: https://idp.example.com",
          "      algorithms: [HS256]",
          "policies:",
          "  - service: billing",
          "    providers: [github]",
        ].join("\n"),
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        "auth.issuers[0].audiences: at least one audience is required",
        "auth.issuers[0]: set exactly one of jwksUrl or staticKeys",
        "auth.issuers[0].algorithms: HS256 is refused: only asymmetric algorithms are accepted",
        expect.stringMatching(/policies\[0\].*unknown provider github/),
      ]),
    );
  });

  it("requires exactly one Vault auth method", () => {
    const problems = problemsOf(() => load({ VAULT_ADDR: "http://vault:8200", VAULT_TOKEN: "t", VAULT_ROLE_ID: "r", VAULT_SECRET_ID: "s" }));
    expect(problems).toContainEqual(expect.stringMatching(/^VAULT_ADDR: set exactly one Vault auth method/));
  });
});
