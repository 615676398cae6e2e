/** Configuration: defaults, every problem in one list, secrets that never print, production refusals. */
import { resolve } from "node:path";
import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load-config.js";

const CONFIG_PATH = "/etc/oauth-broker/broker.yaml";

/** Loads with `yaml` as BROKER_CONFIG; package.json reads as version 9.9.9; no file system. */
function load(env: Record<string, string>, yaml?: string) {
  return loadConfig({
    env: yaml === undefined ? env : { BROKER_CONFIG: CONFIG_PATH, ...env },
    readFile: (path) => {
      if (path === CONFIG_PATH && yaml !== undefined) return yaml;
      if (path.endsWith("package.json")) return JSON.stringify({ version: "9.9.9" });
      throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
    },
  });
}

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

const problemsOf = (run: () => unknown) => configError(run).problems;
const yaml = (...lines: string[]) => lines.join("\n");
const DB = { DATABASE_URL: "postgres://broker:db-password@db.internal:5432/broker" };

describe("loadConfig defaults", () => {
  it("gives the embedded default for an empty environment", () => {
    const config = load({});
    expect(config).toMatchObject({
      nodeEnv: "development",
      version: "9.9.9",
      grpcAddress: { host: "127.0.0.1", port: 50051 },
      httpAddress: { host: "127.0.0.1", port: 8080 },
      dataDir: resolve(".broker-data"),
      databaseUrl: undefined,
      databasePoolSize: 10,
      vault: undefined,
      allowLocalKeyringInProduction: false,
      logLevel: "info",
      sandbox: { enabled: true },
      auth: { issuers: [], protectMetrics: false },
      policies: [],
      limits: {
        perPrincipal: {
          token: { ratePerSecond: 200, burst: 400 },
          read: { ratePerSecond: 50, burst: 100 },
          write: { ratePerSecond: 10, burst: 20 },
          admin: { ratePerSecond: 10, burst: 20 },
        },
        startAuthorizationPerUser: { ratePerSecond: 1, burst: 10 },
      },
      authorization: { returnToAllowList: ["http://127.0.0.1:8080/"], sessionTtlSeconds: 600 },
      tokens: {
        defaultMinValidForSeconds: 60,
        cacheMaxEntries: 10_000,
        proactiveRefreshWindowSeconds: 300,
        proactiveRefreshIntervalSeconds: 15,
        proactiveRefreshConcurrency: 16,
        proactiveRefreshPerSecond: 0,
        leaseSeconds: 10,
        providerPauseMaxSeconds: 300,
        rateLimitBackoffMaxSeconds: 60,
      },
      retention: { tombstoneDays: 30, auditDays: 365, needsReauthEraseDays: 90, changeFeedDays: 7 },
      shutdownGraceMs: 10_000,
      sentryDsn: undefined,
    });
    expect(config.publicUrl.href).toBe("http://127.0.0.1:8080/");
    expect(config.providers).toEqual([
      expect.objectContaining({ id: "sandbox", kind: "sandbox", endpoints: {}, defaultScopes: ["openid", "profile", "offline_access"] }),
    ]);
  });

  it("treats empty variables as unset and resolves the data directory to an absolute path", () => {
    const config = load({ DATABASE_URL: "", BROKER_GRPC_ADDR: "", BROKER_DATA_DIR: "relative/data" });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.grpcAddress.port).toBe(50051);
    expect(config.dataDir).toBe(resolve("relative/data"));
  });

  it("reads listen addresses, IPv6 in brackets and port 0", () => {
    const config = load({ BROKER_GRPC_ADDR: "[::1]:0", BROKER_HTTP_ADDR: "0.0.0.0:65535", BROKER_PUBLIC_URL: "https://broker.example.com" });
    expect(config.grpcAddress).toEqual({ host: "::1", port: 0 });
    expect(config.httpAddress).toEqual({ host: "0.0.0.0", port: 65535 });
    expect(config.authorization.returnToAllowList).toEqual(["https://broker.example.com/"]);
  });

  it.each(["localhost", "localhost:65536", "::1:8080", "[not-ip]:80", "999.1.1.1:80", ":8080", "host:-1"])("refuses the address %s", (address) => {
    expect(problemsOf(() => load({ BROKER_HTTP_ADDR: address }))).toEqual([
      `BROKER_HTTP_ADDR: "${address}" is not a host:port address (IPv6 in brackets, port 0-65535)`,
    ]);
  });

  it("turns the sandbox off when a database is configured, and on again when asked", () => {
    expect(load(DB).sandbox.enabled).toBe(false);
    expect(load(DB).providers).toEqual([]);
    const enabled = load(DB, yaml("sandbox:", "  enabled: true"));
    expect(enabled.providers.map((p) => p.id)).toEqual(["sandbox"]);
    expect(load({}, yaml("sandbox:", "  enabled: false")).providers).toEqual([]);
  });

  it("reads every section of the YAML", () => {
    const config = load(
      { ...DB, APP: "https://app.example.com" },
      yaml(
        "auth:",
        "  protectMetrics: true",
        "limits:",
        "  perPrincipal:",
        "    token: { ratePerSecond: 0.5, burst: 2 }",
        "  startAuthorizationPerUser: { burst: 3 }",
        "authorization:",
        "  returnToAllowList: ['${APP}/settings/']",
        "  sessionTtlSeconds: 300",
        "tokens: { defaultMinValidForSeconds: 0, leaseSeconds: 10 }",
        "retention: { auditDays: 30 }",
        "vault: { createKey: false, timeoutMs: 2000 }",
        "database: { poolSize: 4 }",
        "shutdownGraceMs: 0",
      ),
    );
    expect(config.auth.protectMetrics).toBe(true);
    expect(config.limits.perPrincipal.token).toEqual({ ratePerSecond: 0.5, burst: 2 });
    expect(config.limits.perPrincipal.read).toEqual({ ratePerSecond: 50, burst: 100 });
    expect(config.limits.startAuthorizationPerUser).toEqual({ ratePerSecond: 1, burst: 3 });
    expect(config.authorization).toEqual({ returnToAllowList: ["https://app.example.com/settings/"], sessionTtlSeconds: 300 });
    expect(config.tokens).toMatchObject({ defaultMinValidForSeconds: 0, leaseSeconds: 10, cacheMaxEntries: 10_000 });
    expect(config.retention).toEqual({ tombstoneDays: 30, auditDays: 30, needsReauthEraseDays: 90, changeFeedDays: 7 });
    expect(config.databasePoolSize).toBe(4);
    expect(config.shutdownGraceMs).toBe(0);
    expect(config.vault).toBeUndefined();
  });

  it("is deep-frozen", () => {
    const config = load({ G: "g" }, yaml("providers:", "  google:", "    clientId: id", "    clientSecret: ${G}"));
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.limits.perPrincipal.token)).toBe(true);
    expect(Object.isFrozen(config.providers)).toBe(true);
    expect(Object.isFrozen(config.providers[0]?.defaultScopes)).toBe(true);
    expect(() => (config.providers as unknown[]).push({})).toThrow(TypeError);
    expect(() => {
      (config.tokens as { leaseSeconds: number }).leaseSeconds = 1;
    }).toThrow(TypeError);
  });

  it("falls back to npm_package_version when package.json cannot be read", () => {
    const config = loadConfig({ env: { npm_package_version: "1.2.3" }, readFile: () => { throw new Error("no files here"); } });
    expect(config.version).toBe("1.2.3");
  });
});

describe("loadConfig problems", () => {
  it("lists an unknown key, a literal secret, a missing variable and a bad address together", () => {
    const error = configError(() =>
      load(
        { BROKER_GRPC_ADDR: "localhost" },
        yaml(
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
        ),
      ),
    );
    // Grouped by setting: environment variables first, then YAML paths.
    expect(error.problems).toEqual([
      'BROKER_GRPC_ADDR: "localhost" is not a host:port address (IPv6 in brackets, port 0-65535)',
      "providers.google.clientSecret: must be a ${ENV_VAR} reference, not a literal secret",
      expect.stringMatching(/^providers\.google\.clientSecrte: unknown key \(known here: id, kind, displayName, clientId, clientSecret,/),
      "providers.notion.clientSecret: references NOTION_SECRET, which is not set",
    ]);
    expect(error.message.split("\n")).toEqual(["invalid configuration (4 problems):", ...error.problems.map((p) => `  - ${p}`)]);
    expect(error.message).not.toContain("plain-text-secret");
  });

  it("reports unknown keys at every level with their path", () => {
    const problems = problemsOf(() =>
      load(
        DB,
        yaml(
          "provider: {}",
          "limits:",
          "  perPrincipal:",
          "    token: { rate: 5 }",
          "tokens: { leaseSecs: 5 }",
          "auth:",
          "  issuers:",
          "    - { issuer: 'https://idp', audiences: [a], jwksUrl: 'https://idp/jwks', audience: x }",
          "providers:",
          "  corp:",
          "    kind: oidc",
          "    endpoints: { issuer: 'https://idp', tokenUrl: 'https://idp/token' }",
        ),
      ),
    );
    expect(problems.map((p) => p.split(":")[0])).toEqual([
      "auth.issuers[0].audience",
      "limits.perPrincipal.token.rate",
      "provider",
      "providers.corp.endpoints.tokenUrl",
      "tokens.leaseSecs",
    ]);
    expect(problems.every((p) => p.includes(": unknown key"))).toBe(true);
  });

  it("bounds request bodies at 1 MiB unless limits.maxRequestBytes says otherwise, within 4 KiB to 64 MiB", () => {
    expect(load(DB).limits.maxRequestBytes).toBe(1_048_576);
    expect(load(DB, "limits: { maxRequestBytes: 65536 }").limits.maxRequestBytes).toBe(65_536);
    expect(problemsOf(() => load(DB, "limits: { maxRequestBytes: 100 }"))).toEqual([
      "limits.maxRequestBytes: must be a whole number between 4096 and 67108864",
    ]);
  });

  it("names the path of every bad number, boolean and list", () => {
    const problems = problemsOf(() =>
      load(
        DB,
        yaml(
          "database: { poolSize: 0 }",
          "tokens: { cacheMaxEntries: 1.5, leaseSeconds: '30', proactiveRefreshPerSecond: -5 }",
          "retention: { auditDays: -1 }",
          "limits: { perPrincipal: { read: { ratePerSecond: 0 } } }",
          "auth: { protectMetrics: 'yes' }",
          "authorization: { returnToAllowList: 'https://app' }",
          "shutdownGraceMs: 1e9",
        ),
      ),
    );
    expect(problems).toEqual([
      "auth.protectMetrics: must be true or false",
      "authorization.returnToAllowList: must be a list of non-empty strings",
      "database.poolSize: must be a whole number between 1 and 500",
      "limits.perPrincipal.read.ratePerSecond: must be a number > 0",
      "retention.auditDays: must be a whole number ≥ 1",
      "shutdownGraceMs: must be a whole number between 0 and 600000",
      "tokens.cacheMaxEntries: must be a whole number between 1 and 10000000",
      "tokens.leaseSeconds: must be a whole number between 1 and 600",
      "tokens.proactiveRefreshPerSecond: must be a whole number between 0 and 100000",
    ]);
  });

  it("caps the authorization session at 10 minutes and checks return-to prefixes", () => {
    const problems = problemsOf(() =>
      load({}, yaml("authorization:", "  sessionTtlSeconds: 3600", "  returnToAllowList: ['/relative', 'https://user:pw@app.example.com/', 'ftp://x/']")),
    );
    expect(problems).toEqual([
      "authorization.returnToAllowList[0]: must be an absolute http(s) URL without user info",
      "authorization.returnToAllowList[1]: must be an absolute http(s) URL without user info",
      "authorization.returnToAllowList[2]: must be an absolute http(s) URL without user info",
      "authorization.sessionTtlSeconds: must be a whole number between 1 and 600",
    ]);
    expect(problemsOf(() => load({}, "authorization: { returnToAllowList: [] }"))).toEqual(["authorization.returnToAllowList: needs at least one entry"]);
  });

  it("checks the environment", () => {
    const problems = problemsOf(() =>
      load({
        LOG_LEVEL: "verbose",
        BROKER_PUBLIC_URL: "broker.example.com",
        DATABASE_URL: "mysql://root:hunter2@db/x",
        SENTRY_DSN: "not a url",
        BROKER_ALLOW_LOCAL_KEYRING: "yes",
      }),
    );
    expect(problems).toEqual([
      "BROKER_ALLOW_LOCAL_KEYRING: must be true or false",
      'BROKER_PUBLIC_URL: "broker.example.com" must be an absolute http(s) URL without user info',
      "DATABASE_URL: must be a postgres:// or postgresql:// URL (value not shown)",
      "LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent",
      "SENTRY_DSN: must be a https:// or http:// URL (value not shown)",
    ]);
    expect(problems.join("\n")).not.toContain("hunter2");
  });

  it("reports an unreadable or malformed BROKER_CONFIG", () => {
    expect(problemsOf(() => loadConfig({ env: { BROKER_CONFIG: "/nope.yaml" }, readFile: () => { throw Object.assign(new Error("x"), { code: "ENOENT" }); } }))).toEqual([
      "BROKER_CONFIG: cannot read /nope.yaml (ENOENT)",
    ]);
    expect(problemsOf(() => load({}, "providers: [unclosed"))[0]).toMatch(/^BROKER_CONFIG: \/etc\/oauth-broker\/broker\.yaml is not valid YAML: .*line 1/);
    expect(problemsOf(() => load({}, "- just\n- a list\n"))).toEqual(["BROKER_CONFIG: must be a mapping"]);
  });

  it("interpolates ${VAR} in ordinary strings and reports unset ones", () => {
    const config = load({ ...DB, CORP_HOST: "id.example.com", CORP_CLIENT: "c-1", S: "s" }, yaml(
      "providers:",
      "  corp:",
      "    kind: oidc",
      "    clientId: ${CORP_CLIENT}",
      "    clientSecret: ${S}",
      "    endpoints: { issuer: 'https://${CORP_HOST}/' }",
    ));
    expect(config.providers[0]).toMatchObject({ clientId: "c-1", endpoints: { issuer: "https://id.example.com/" } });
    expect(problemsOf(() => load(DB, yaml("providers:", "  corp:", "    kind: oidc", "    endpoints: { issuer: 'https://${CORP_HOST}/' }")))).toEqual([
      "providers.corp.endpoints: a oidc provider needs endpoints.issuer, or both endpoints.authorization and endpoints.token",
      "providers.corp.endpoints.issuer: references CORP_HOST, which is not set",
      "providers.corp.endpoints.issuer: must be an absolute http(s) URL without user info",
    ]);
  });
});

describe("loadConfig secrets", () => {
  it("resolves secrets from the environment and never prints them", () => {
    const config = load(
      {
        GOOGLE_SECRET: "g-very-secret",
        DATABASE_URL: "postgres://u:db-password@db/x",
        VAULT_ADDR: "http://vault:8200",
        VAULT_TOKEN: "s.vault-token",
        SENTRY_DSN: "https://sentry-key@o1.ingest.sentry.io/1",
      },
      yaml("providers:", "  google:", "    kind: google", "    clientId: id-1", "    clientSecret: ${GOOGLE_SECRET}"),
    );
    const google = config.providers.find((p) => p.id === "google");
    expect(google?.clientSecret?.reveal()).toBe("g-very-secret");
    expect(config.databaseUrl?.reveal()).toBe("postgres://u:db-password@db/x");
    expect(config.vault?.token?.reveal()).toBe("s.vault-token");
    const printed = [JSON.stringify(config), inspect(config, { depth: Infinity }), String(google?.clientSecret), `${config.sentryDsn}`].join("\n");
    for (const secret of ["g-very-secret", "db-password", "s.vault-token", "sentry-key"]) expect(printed).not.toContain(secret);
    expect(JSON.parse(JSON.stringify(config)).providers[0].clientSecret).toBe("[redacted]");
  });

  it("refuses literal secrets in any form, and empty referenced variables", () => {
    const problems = problemsOf(() =>
      load(
        { EMPTY: "" },
        yaml(
          "providers:",
          "  a: { kind: google, clientId: a, clientSecret: 12345 }",
          "  b: { kind: google, clientId: b, clientSecret: 'prefix-${EMPTY}' }",
          "  c: { kind: google, clientId: c, clientSecret: '${EMPTY}' }",
        ),
      ),
    );
    expect(problems).toEqual([
      "providers.a.clientSecret: must be a ${ENV_VAR} reference, not a literal secret",
      "providers.b.clientSecret: must be a ${ENV_VAR} reference, not a literal secret",
      "providers.c.clientSecret: references EMPTY, which is not set",
    ]);
  });

  it("keeps secrets out of authorization parameters, which travel through the browser", () => {
    const problems = problemsOf(() =>
      load(
        { S: "s" },
        yaml(
          "providers:",
          "  dropbox:",
          "    kind: oauth2",
          "    clientId: d",
          "    clientSecret: ${S}",
          "    endpoints: { authorization: 'https://www.dropbox.com/oauth2/authorize', token: 'https://api.dropboxapi.com/oauth2/token' }",
          "    authorizationParams: { token_access_type: offline, client_secret: '${S}', apiKey: k, state: fixed }",
        ),
      ),
    );
    expect(problems).toEqual([
      "providers.dropbox.authorizationParams.apiKey: looks like a secret: authorization parameters travel through the browser, so they can never carry one",
      "providers.dropbox.authorizationParams.client_secret: looks like a secret: authorization parameters travel through the browser, so they can never carry one",
      "providers.dropbox.authorizationParams.state: is set by the broker (use defaultScopes for scope)",
    ]);
  });
});

describe("loadConfig in production", () => {
  it("refuses the local keyring and the sandbox", () => {
    const problems = problemsOf(() => load({ NODE_ENV: "production" }, yaml("sandbox:", "  enabled: true")));
    expect(problems).toEqual([
      "VAULT_ADDR: required when NODE_ENV=production (or set BROKER_ALLOW_LOCAL_KEYRING=true to accept the local keyring)",
      "sandbox.enabled: the sandbox provider is refused when NODE_ENV=production",
    ]);
  });

  it("accepts the local keyring when explicitly allowed, without an implicit sandbox", () => {
    const config = load({ NODE_ENV: "production", BROKER_ALLOW_LOCAL_KEYRING: "true" });
    expect(config.allowLocalKeyringInProduction).toBe(true);
    expect(config.sandbox.enabled).toBe(false);
    expect(config.providers).toEqual([]);
  });

  it("accepts Vault", () => {
    const config = load({ NODE_ENV: "production", ...DB, VAULT_ADDR: "https://vault:8200", VAULT_TOKEN: "t" });
    expect(config.vault?.address).toBe("https://vault:8200");
  });
});

describe("loadConfig Vault", () => {
  const VAULT = { VAULT_ADDR: "https://vault.internal:8200" };

  it("reads token auth with the defaults and the YAML settings", () => {
    const config = load({ ...VAULT, VAULT_TOKEN: "t", VAULT_NAMESPACE: "team" }, "vault: { createKey: false, timeoutMs: 1500 }");
    expect(config.vault).toMatchObject({
      address: "https://vault.internal:8200",
      roleId: undefined,
      secretId: undefined,
      kubernetesRole: undefined,
      namespace: "team",
      mount: "transit",
      key: "oauth-broker",
      createKey: false,
      timeoutMs: 1500,
    });
  });

  it("reads AppRole and Kubernetes auth", () => {
    const approle = load({ ...VAULT, VAULT_ROLE_ID: "role", VAULT_SECRET_ID: "sid", VAULT_TRANSIT_MOUNT: "team/transit", VAULT_TRANSIT_KEY: "k1" });
    expect(approle.vault).toMatchObject({ roleId: "role", mount: "team/transit", key: "k1", createKey: true, timeoutMs: 5000 });
    expect(approle.vault?.secretId?.reveal()).toBe("sid");
    const k8s = load({ ...VAULT, VAULT_K8S_ROLE: "broker", VAULT_K8S_TOKEN_PATH: "/var/run/token" });
    expect(k8s.vault).toMatchObject({ kubernetesRole: "broker", kubernetesTokenPath: "/var/run/token", token: undefined });
    expect(load({ ...VAULT, VAULT_K8S_ROLE: "broker" }).vault?.kubernetesTokenPath).toBe("/var/run/secrets/kubernetes.io/serviceaccount/token");
  });

  it("requires exactly one auth method", () => {
    expect(problemsOf(() => load(VAULT))).toEqual([expect.stringMatching(/^VAULT_ADDR: set exactly one Vault auth method \(0 set\)/)]);
    expect(problemsOf(() => load({ ...VAULT, VAULT_TOKEN: "t", VAULT_ROLE_ID: "r", VAULT_SECRET_ID: "s" }))).toEqual([
      expect.stringMatching(/^VAULT_ADDR: set exactly one Vault auth method \(2 set\)/),
    ]);
    expect(problemsOf(() => load({ ...VAULT, VAULT_ROLE_ID: "r" }))).toEqual(["VAULT_SECRET_ID: AppRole needs both VAULT_ROLE_ID and VAULT_SECRET_ID"]);
  });

  it("checks the address, mount and key", () => {
    const problems = problemsOf(() => load({ VAULT_ADDR: "vault:8200", VAULT_TOKEN: "t", VAULT_TRANSIT_MOUNT: "/transit/", VAULT_TRANSIT_KEY: "a/b" }));
    expect(problems).toEqual([
      "VAULT_ADDR: must be an absolute http(s) URL such as https://vault.internal:8200",
      "VAULT_TRANSIT_KEY: must be a key name of letters, digits, '.', '_' and '-'",
      "VAULT_TRANSIT_MOUNT: must be a Vault path such as transit or team/transit",
    ]);
  });

  it("does not select Vault from a stray VAULT_TOKEN", () => {
    expect(load({ VAULT_TOKEN: "from-the-developer-shell" }).vault).toBeUndefined();
  });
});

describe("loadConfig callers", () => {
  it("reads issuers with their defaults", () => {
    const config = load(
      DB,
      yaml(
        "auth:",
        "  issuers:",
        "    - issuer: https://kubernetes.default.svc",
        "      audiences: [oauth-broker]",
        "      jwksUrl: https://kubernetes.default.svc/openid/v1/jwks",
        "    - name: product",
        "      issuer: https://app.example.com",
        "      audiences: [oauth-broker]",
        "      staticKeys: ['{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"abc\"}']",
        "      algorithms: [EdDSA]",
        "      principalKind: user",
        "      rolesClaim: groups",
        "      clockSkewSeconds: 5",
        "      maxTokenLifetimeSeconds: 3600",
      ),
    );
    expect(config.auth.issuers).toEqual([
      {
        name: "https://kubernetes.default.svc",
        issuer: "https://kubernetes.default.svc",
        audiences: ["oauth-broker"],
        jwksUrl: "https://kubernetes.default.svc/openid/v1/jwks",
        staticKeys: [],
        algorithms: ["RS256", "ES256", "EdDSA"],
        clockSkewSeconds: 30,
        maxTokenLifetimeSeconds: 86_400,
        principalKind: "service",
        rolesClaim: "roles",
        allowAdmin: false,
        subjectClaim: "sub",
      },
      expect.objectContaining({
        name: "product",
        jwksUrl: undefined,
        algorithms: ["EdDSA"],
        principalKind: "user",
        rolesClaim: "groups",
        clockSkewSeconds: 5,
        maxTokenLifetimeSeconds: 3600,
      }),
    ]);
  });

  it("refuses incomplete issuers and symmetric or unknown algorithms", () => {
    const problems = problemsOf(() =>
      load(
        DB,
        yaml(
          "auth:",
          "  issuers:",
          "    - issuer: https://idp.example.com",
          "      algorithms: [HS256, none, RS1]",
          "      principalKind: robot",
          "    - issuer: https://idp.example.com",
          "      audiences: [a]",
          "      jwksUrl: https://idp.example.com/jwks",
          "      staticKeys: [k]",
        ),
      ),
    );
    expect(problems).toEqual([
      "auth.issuers[0]: set exactly one of jwksUrl or staticKeys",
      "auth.issuers[0].algorithms: HS256 is refused: only asymmetric algorithms are accepted",
      "auth.issuers[0].algorithms: none is refused: only asymmetric algorithms are accepted",
      expect.stringMatching(/^auth\.issuers\[0\]\.algorithms: RS1 is not one of RS256, /),
      "auth.issuers[0].audiences: at least one audience is required",
      "auth.issuers[0].principalKind: must be user or service",
      "auth.issuers[1]: set exactly one of jwksUrl or staticKeys",
      'auth.issuers[1]: issuer name "https://idp.example.com" is used twice',
    ]);
    expect(problemsOf(() => load(DB, "auth: { issuers: [{ name: local, issuer: 'https://x', audiences: [a], jwksUrl: 'https://x/jwks' }] }"))).toEqual([
      `auth.issuers[0]: the name "local" belongs to the broker's own signing key; choose another`,
    ]);
  });

  it("refuses a token lifetime bound below a minute or above ten years", () => {
    const issuer = (lifetime: string) => `auth: { issuers: [{ issuer: 'https://x', audiences: [a], jwksUrl: 'https://x/jwks', maxTokenLifetimeSeconds: ${lifetime} }] }`;
    expect(problemsOf(() => load(DB, issuer("59")))).toEqual([expect.stringMatching(/^auth\.issuers\[0\]\.maxTokenLifetimeSeconds: /)]);
    expect(problemsOf(() => load(DB, issuer("315360001")))).toEqual([expect.stringMatching(/^auth\.issuers\[0\]\.maxTokenLifetimeSeconds: /)]);
    expect(load(DB, issuer("315360000")).auth.issuers[0]?.maxTokenLifetimeSeconds).toBe(315_360_000);
  });

  it("reads policies with their defaults", () => {
    const config = load({}, yaml("policies:", "  - service: billing", "    providers: [sandbox]", "    scopes: [openid]", "    strict: true"));
    expect(config.policies).toEqual([{ service: "billing", providers: ["sandbox"], scopes: ["openid"], actForUsers: false, rpcs: [], strict: true }]);
  });

  it("refuses a policy naming an unknown provider", () => {
    const problems = problemsOf(() => load(DB, yaml("policies:", "  - service: billing", "    providers: [github]")));
    expect(problems).toEqual([expect.stringMatching(/^policies\[0\].*: unknown provider github$/)]);
  });
});
