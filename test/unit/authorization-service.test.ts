/**
 * The authorization flow with in-memory fakes: StartAuthorization's checks, the session and its
 * browser binding, the callback's outcomes and error codes, and CompleteAuthorization's owner
 * check. The provider fake reads the callback with the real `readAuthorizationResponse`.
 */
import { createHash, randomUUID } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import type { ProviderConfig } from "../../src/config/types.js";
import type { AuthorizationIntegrationStore, AuthorizationSessionStore, IntegrationUpsert } from "../../src/domain/authorization-ports.js";
import {
  callbackErrorCode,
  createAuthorizationService,
  flowCookieName,
  sanitizeErrorCode,
  stateHash,
  type AuthorizationService,
  type AuthorizationServiceDeps,
  type CallbackOutcome,
} from "../../src/domain/authorization-service.js";
import { BrokerError, isBrokerError } from "../../src/domain/errors.js";
import type { ErrorReason } from "../../src/domain/error-reasons.js";
import type {
  AuditEventInput,
  AuthorizationRequestInput,
  Cipher,
  CodeExchangeInput,
  ProviderClient,
  ProviderGrant,
  RevocationResult,
} from "../../src/domain/ports.js";
import { providerProfile } from "../../src/providers/provider-profile.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import type { AuthorizationSession, Integration, Principal, RequestContext } from "../../src/domain/types.js";
import { readAuthorizationResponse } from "../../src/providers/authorization-response.js";
import { googleCanonicalScope } from "../../src/providers/google.js";
import { microsoftCanonicalScope } from "../../src/providers/microsoft.js";
import { captureLogger } from "../support/log-capture.js";
import { manualClock, type ManualClock } from "../support/manual-clock.js";
import { testProviderConfig } from "../support/peers/provider-config.js";

const ISSUER = "https://issuer.test";
const PUBLIC_URL = new URL("https://broker.example.com");
const RETURN_TO = "https://app.example.com/integrations";
const NOW = new Date("2030-01-01T12:00:00Z");

const alice: Principal = { kind: "user", subject: "alice", issuer: "local" };
const bob: Principal = { kind: "user", subject: "bob", issuer: "local" };
const backend: Principal = { kind: "service", subject: "backend", issuer: "local" };
const reader: Principal = { kind: "service", subject: "reader", issuer: "local" };

function ctx(principal: Principal): RequestContext {
  return { principal, requestId: "req-1", peer: "127.0.0.1:1" };
}

interface FakeProvider extends ProviderClient {
  readonly urlInputs: AuthorizationRequestInput[];
  readonly exchanges: CodeExchangeInput[];
  grant: ProviderGrant;
  /** Replaces the exchange (after the callback checks) when set. */
  exchangeOverride: ((input: CodeExchangeInput) => Promise<ProviderGrant>) | undefined;
  readonly revocations: Array<{ token: string; hint: string }>;
  revocationResult: RevocationResult | Error;
}

function fakeProvider(id: string): FakeProvider {
  const provider: FakeProvider = {
    id,
    urlInputs: [],
    exchanges: [],
    grant: grantFor("acct-1", { refreshToken: "rt-secret-1" }),
    exchangeOverride: undefined,
    revocations: [],
    revocationResult: { outcome: "not_supported" },
    async authorizationUrl(input) {
      provider.urlInputs.push(input);
      const url = new URL(`${ISSUER}/authorize`);
      url.searchParams.set("state", input.state);
      url.searchParams.set("redirect_uri", input.redirectUri);
      // As the OpenID adapters do: the protocol's own scope joins the caller's on the wire.
      url.searchParams.set("scope", [...input.scopes, "openid"].join(" "));
      return url;
    },
    async exchangeCode(input) {
      provider.exchanges.push(input);
      readAuthorizationResponse(input.callbackUrl, { provider: id, state: input.expectedState, issuer: ISSUER });
      if (provider.exchangeOverride !== undefined) return provider.exchangeOverride(input);
      return provider.grant;
    },
    async refresh() {
      throw new Error("not used");
    },
    async revoke(token, hint) {
      provider.revocations.push({ token, hint });
      if (provider.revocationResult instanceof Error) throw provider.revocationResult;
      return provider.revocationResult;
    },
  };
  return provider;
}

function grantFor(accountId: string, options: { refreshToken?: string; scopes?: string[]; accessToken?: string } = {}): ProviderGrant {
  return {
    tokens: {
      accessToken: options.accessToken ?? `at-secret-${accountId}`,
      tokenType: "Bearer",
      expiresAt: new Date(NOW.getTime() + 3600_000),
      refreshToken: options.refreshToken,
      scopes: options.scopes ?? ["openid", "calendar.read"],
    },
    account: { id: accountId, name: `${accountId}@example.test`, attributes: {} },
  };
}

function seededIntegration(input: { id: string; userId: string; provider: string; accountId: string; scopes: string[] }): Integration {
  return {
    id: input.id,
    userId: input.userId,
    provider: input.provider,
    externalAccount: { id: input.accountId, name: `${input.accountId}@example.test`, attributes: {} },
    grantedScopes: input.scopes,
    status: "active",
    statusReason: "",
    createdAt: NOW,
    updatedAt: NOW,
    lastRefreshedAt: NOW,
    lastUsedAt: null,
    accessTokenExpiresAt: new Date(NOW.getTime() + 3600_000),
    refreshFailureCount: 0,
    hasRefreshToken: true,
  };
}

function fakeSessions(): AuthorizationSessionStore & { rows: Map<string, AuthorizationSession & { stateHash: string }> } {
  const rows = new Map<string, AuthorizationSession & { stateHash: string }>();
  return {
    rows,
    async create(session) {
      if (rows.has(session.stateHash)) throw new Error("duplicate state hash");
      rows.set(session.stateHash, session);
    },
    async consume(hash) {
      const session = rows.get(hash);
      rows.delete(hash);
      return session;
    },
  };
}

/** Behaves like the PostgreSQL repository: `already_exists` with the winner's id on a concurrent insert. */
function fakeIntegrations(): AuthorizationIntegrationStore & { rows: Integration[]; writes: IntegrationUpsert[]; raceOnce: boolean } {
  const rows: Integration[] = [];
  const writes: IntegrationUpsert[] = [];
  const store = {
    rows,
    writes,
    /** The next findLive misses the row, as when another flow inserts it in between. */
    raceOnce: false,
    async findLive(userId: string, provider: string, externalAccountId: string) {
      if (store.raceOnce) {
        store.raceOnce = false;
        return undefined;
      }
      return rows.find((r) => r.userId === userId && r.provider === provider && r.externalAccount.id === externalAccountId && r.status !== "deleted");
    },
    async findForUser(userId: string, provider: string) {
      return rows.filter((r) => r.userId === userId && r.provider === provider);
    },
    async findLiveForAccount(providers: readonly string[], externalAccountId: string) {
      return rows.filter((r) => providers.includes(r.provider) && r.externalAccount.id === externalAccountId && r.status !== "deleted");
    },
    async markNeedsReauth(id: string, reason: string) {
      const index = rows.findIndex((r) => r.id === id && r.status === "active");
      const row = rows[index];
      if (row !== undefined) rows[index] = { ...row, status: "needs_reauth", statusReason: reason };
    },
    async upsertWithTokens(input: IntegrationUpsert) {
      writes.push(input);
      const index = rows.findIndex(
        (r) => r.userId === input.userId && r.provider === input.provider && r.externalAccount.id === input.externalAccount.id && r.status !== "deleted",
      );
      const existing = index >= 0 ? rows[index] : undefined;
      if (existing !== undefined && existing.id !== input.id) {
        throw new BrokerError("already_exists", "connected concurrently", { metadata: { integration_id: existing.id } });
      }
      const integration: Integration = {
        id: existing?.id ?? input.id,
        userId: input.userId,
        provider: input.provider,
        externalAccount: input.externalAccount,
        grantedScopes: input.grantedScopes,
        status: "active",
        statusReason: "",
        createdAt: existing?.createdAt ?? NOW,
        updatedAt: NOW,
        lastRefreshedAt: NOW,
        lastUsedAt: null,
        accessTokenExpiresAt: input.tokens.expiresAt,
        refreshFailureCount: 0,
        hasRefreshToken: input.tokens.refreshTokenCiphertext !== null || existing?.hasRefreshToken === true,
      };
      if (existing === undefined) rows.push(integration);
      else rows[index] = integration;
      return { integration, created: existing === undefined };
    },
  };
  return store;
}

type FakeCipher = Pick<Cipher, "encrypt" | "decrypt" | "encryptBatch"> & { batchCalls: number };

/** Reversible "encryption" bound to its context, like the real ciphers. */
function fakeCipher(): FakeCipher {
  const seal = (plaintext: string, context: string): string => `fake:${Buffer.from(context).toString("base64url")}:${Buffer.from(plaintext).toString("base64url")}`;
  const cipher: FakeCipher = {
    batchCalls: 0,
    async encrypt({ plaintext, context }) {
      return seal(plaintext, context);
    },
    async encryptBatch(inputs) {
      cipher.batchCalls += 1;
      return inputs.map((i) => seal(i.plaintext, i.context));
    },
    async decrypt({ ciphertext, context }) {
      const [prefix, boundTo, body] = ciphertext.split(":");
      if (prefix !== "fake" || boundTo !== Buffer.from(context).toString("base64url") || body === undefined) {
        throw new BrokerError("key_service_error", "ciphertext failed authentication", { reason: "CIPHERTEXT_AUTHENTICATION_FAILED" });
      }
      return Buffer.from(body, "base64url").toString("utf8");
    },
  };
  return cipher;
}

interface Harness {
  readonly service: AuthorizationService;
  readonly providers: Map<string, FakeProvider>;
  readonly configs: ProviderConfig[];
  readonly sessions: ReturnType<typeof fakeSessions>;
  readonly integrations: ReturnType<typeof fakeIntegrations>;
  readonly cipher: FakeCipher;
  readonly audit: AuditEventInput[];
  readonly limited: string[];
  readonly changed: string[];
  readonly clock: ManualClock;
}

function harness(overrides: Partial<AuthorizationServiceDeps> = {}): Harness {
  const configs = [
    testProviderConfig({ id: "google", kind: "google", clientSecret: "s", defaultScopes: ["calendar.read"], allowedScopes: ["calendar.write"] }),
    testProviderConfig({ id: "microsoft", kind: "microsoft", clientSecret: "s", allowedScopes: ["User.Read"] }),
    testProviderConfig({ id: "notion", kind: "notion", clientSecret: "s", pkce: false }),
    testProviderConfig({ id: "nocreds", kind: "oidc" }),
  ];
  const providers = new Map(configs.map((c) => [c.id, fakeProvider(c.id)]));
  const sessions = fakeSessions();
  const integrations = fakeIntegrations();
  const cipher = fakeCipher();
  const audit: AuditEventInput[] = [];
  const limited: string[] = [];
  const changed: string[] = [];
  const policy = createRpcPolicy({
    providers: configs,
    policies: [
      { service: "backend", providers: ["*"], scopes: ["*"], actForUsers: true, rpcs: ["AuthorizationService/*"], strict: false },
      { service: "reader", providers: ["google"], scopes: ["*"], actForUsers: false, rpcs: ["AuthorizationService/*"], strict: false },
    ],
  });
  const h: Harness = { service: undefined as unknown as AuthorizationService, providers, configs, sessions, integrations, cipher, audit, limited, changed, clock: manualClock(NOW.getTime()) };
  const service = createAuthorizationService({
    providers: {
      list: () => configs.map(providerProfile),
      client: (id) => providers.get(id),
      redirectUri: (id) => `${PUBLIC_URL.origin}/oauth/callback/${id}`,
    },
    policy: () => policy,
    sessions,
    integrations,
    cipher,
    audit: { record: async (event) => void audit.push(event) },
    settings: () => ({ returnToAllowList: [RETURN_TO], sessionTtlSeconds: 300 }),
    publicUrl: PUBLIC_URL,
    clock: h.clock,
    limitStart: (userId) => void limited.push(userId),
    onIntegrationChanged: (id) => void changed.push(id),
    ...overrides,
  });
  return Object.assign(h, { service });
}

async function caught(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof BrokerError) return error;
    throw error;
  }
  throw new Error("expected a BrokerError");
}

function provider(h: Harness, id: string): FakeProvider {
  const found = h.providers.get(id);
  if (found === undefined) throw new Error(`no fake ${id}`);
  return found;
}

/** Starts a flow and returns what the provider would redirect back with. */
async function startFlow(h: Harness, principal: Principal, input: { provider?: string; userId?: string; scopes?: string[]; returnTo?: string } = {}) {
  const providerId = input.provider ?? "google";
  const result = await h.service.start(ctx(principal), {
    provider: providerId,
    scopes: input.scopes ?? [],
    returnTo: input.returnTo ?? "",
    userId: input.userId ?? "",
  });
  const state = new URL(result.authorizationUrl).searchParams.get("state") ?? "";
  return { result, state, query: (extra: Record<string, string> = { code: "code-secret-1" }) => new URLSearchParams({ state, ...extra }) };
}

function callback(h: Harness, providerId: string, query: URLSearchParams, binding?: string): Promise<CallbackOutcome> {
  return h.service.handleCallback({ provider: providerId, query, binding, requestId: "req-cb", peer: "127.0.0.1:2" });
}

function sha256(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}

describe("StartAuthorization", () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });

  it("names the provider field and lists the configured providers when the provider is unknown", async () => {
    const error = await caught(h.service.start(ctx(alice), { provider: "gogle", scopes: [], returnTo: "", userId: "" }));
    expect(error.code).toBe("invalid_argument");
    expect(error.fieldViolations.map((v) => v.field)).toEqual(["provider"]);
    expect(error.message).toContain("google, microsoft, notion, nocreds");
    const empty = await caught(h.service.start(ctx(alice), { provider: "", scopes: [], returnTo: "", userId: "" }));
    expect(empty.fieldViolations.map((v) => v.field)).toEqual(["provider"]);
  });

  it("answers failed_precondition for a provider without credentials", async () => {
    const error = await caught(h.service.start(ctx(alice), { provider: "nocreds", scopes: [], returnTo: "", userId: "" }));
    expect(error.code).toBe("failed_precondition");
    expect(error.reason).toBe("PROVIDER_NOT_CONFIGURED");
    expect(h.sessions.rows.size).toBe(0);
  });

  it("records the scopes the provider is really asked for (the client's additions included) in the session and the audit event", async () => {
    const google = provider(h, "google");
    const plain = google.authorizationUrl.bind(google);
    // Like the OpenID client for a provider advertising offline_access.
    google.authorizationUrl = async (input) => {
      const url = await plain(input);
      url.searchParams.set("scope", [...input.scopes, "openid", "offline_access"].join(" "));
      return url;
    };
    const { result } = await startFlow(h, alice, { scopes: ["calendar.read"] });
    expect(google.urlInputs.at(-1)?.scopes).toEqual(["calendar.read"]);
    const stored = [...h.sessions.rows.values()].find((row) => row.id === result.sessionId);
    expect(stored?.requestedScopes).toEqual(["calendar.read", "openid", "offline_access"]);
    const started = h.audit.find((event) => event.action === "authorization.started" && event.details?.["session_id"] === result.sessionId);
    expect(started?.scopes).toEqual(["calendar.read", "openid", "offline_access"]);
  });

  it("reads an integration's granted scopes, asked again, in configuration spelling (Reconnect asks for the same grant)", async () => {
    const google = provider(h, "google");
    Object.assign(google, { canonicalScope: googleCanonicalScope });
    const calendar = "https://www.googleapis.com/auth/calendar.readonly";
    h.configs[0] = testProviderConfig({ id: "google", kind: "google", clientSecret: "s", defaultScopes: ["openid", "email", "profile"], allowedScopes: [calendar] });
    await startFlow(h, alice, {
      scopes: ["openid", "https://www.googleapis.com/auth/userinfo.email", "https://www.googleapis.com/auth/userinfo.profile", calendar],
    });
    expect(google.urlInputs.at(-1)?.scopes).toEqual(["openid", "email", "profile", calendar]);

    const microsoft = provider(h, "microsoft");
    Object.assign(microsoft, { canonicalScope: microsoftCanonicalScope });
    h.configs[1] = testProviderConfig({ id: "microsoft", kind: "microsoft", clientSecret: "s", allowedScopes: ["profile", "User.Read", "Mail.Read"] });
    // As Graph grants them: lower case with the Graph prefix, and the protocol's own scopes,
    // which this configuration does not list and the client adds itself.
    await startFlow(h, alice, {
      provider: "microsoft",
      scopes: ["https://graph.microsoft.com/mail.read", "user.read", "openid", "profile", "offline_access"],
    });
    expect(microsoft.urlInputs.at(-1)?.scopes).toEqual(["Mail.Read", "User.Read", "profile"]);
    // A scope the configuration does not allow in any spelling is still refused, by name.
    const refused = await caught(startFlow(h, alice, { provider: "microsoft", scopes: ["openid", "https://graph.microsoft.com/Files.ReadWrite"] }));
    expect(refused).toMatchObject({ code: "invalid_argument" });
    expect(refused.fieldViolations).toEqual([
      { field: "scopes[1]", description: "https://graph.microsoft.com/Files.ReadWrite is not allowed for provider microsoft" },
    ]);
    expect(refused.message).toContain("https://graph.microsoft.com/Files.ReadWrite is not allowed for provider microsoft");
  });

  it("binds a browser flow: cookie for the callback path, state hashed with the binding, verifier encrypted for the session", async () => {
    const { result, state } = await startFlow(h, alice);
    const binding = result.browserBinding;
    expect(binding).toEqual({
      cookieName: "oauth_broker_flow_google",
      value: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) as unknown as string,
      path: "/oauth/callback/google",
      maxAgeSeconds: 300,
      secure: true,
    });
    expect(state).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const [stored] = [...h.sessions.rows.values()];
    expect(stored?.stateHash).toBe(sha256(`${state}.${binding?.value ?? ""}`));
    expect(stored?.stateHash).toBe(stateHash(state, binding?.value));
    expect(h.sessions.rows.has(sha256(state))).toBe(false);
    // The session keeps what was asked at the provider: the caller's scopes and the protocol's.
    expect(stored).toMatchObject({ id: result.sessionId, userId: "alice", provider: "google", requestedScopes: ["calendar.read", "openid"], returnTo: RETURN_TO });
    expect(stored?.expiresAt).toEqual(new Date(NOW.getTime() + 300_000));
    expect(result.expiresAt).toEqual(stored?.expiresAt);

    const urlInput = provider(h, "google").urlInputs[0];
    expect(urlInput?.redirectUri).toBe("https://broker.example.com/oauth/callback/google");
    expect(urlInput?.codeVerifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(urlInput?.nonce).toBe(stored?.nonce);
    expect(stored?.codeVerifierCiphertext).not.toContain(urlInput?.codeVerifier ?? "?");
    await expect(h.cipher.decrypt({ ciphertext: stored?.codeVerifierCiphertext ?? "", context: result.sessionId })).resolves.toBe(urlInput?.codeVerifier);
    expect(h.audit).toEqual([
      expect.objectContaining({ action: "authorization.started", outcome: "success", caller: "alice", callerKind: "user", userId: "alice", provider: "google" }),
    ]);
    expect(JSON.stringify(h.audit)).not.toContain(state);
  });

  it("leaves a service's flow unbound and needs user_id", async () => {
    const { result, state } = await startFlow(h, backend, { userId: "carol" });
    expect(result.browserBinding).toBeUndefined();
    expect(h.sessions.rows.get(sha256(state))?.userId).toBe("carol");
    const missing = await caught(h.service.start(ctx(backend), { provider: "google", scopes: [], returnTo: "", userId: "" }));
    expect(missing.fieldViolations.map((v) => v.field)).toEqual(["user_id"]);
    expect((await caught(startFlow(h, reader, { userId: "carol" }))).reason).toBe("CANNOT_ACT_FOR_USERS");
    expect((await caught(startFlow(h, reader, { provider: "notion", userId: "carol" }))).reason).toBe("PROVIDER_NOT_ALLOWED");
  });

  it("refuses a user acting for another user", async () => {
    const error = await caught(startFlow(h, alice, { userId: "bob" }));
    expect(error.code).toBe("permission_denied");
    expect(h.sessions.rows.size).toBe(0);
  });

  it("uses the default scopes when none are given and checks requested ones against the allowed set", async () => {
    await startFlow(h, alice, { scopes: ["calendar.write", "calendar.write"] });
    expect(provider(h, "google").urlInputs[0]?.scopes).toEqual(["calendar.write"]);
    const error = await caught(startFlow(h, alice, { scopes: ["calendar.write", "drive"] }));
    expect(error.code).toBe("invalid_argument");
    expect(error.fieldViolations.map((v) => v.field)).toEqual(["scopes[1]"]);
  });

  it("rejects a return_to outside the allow-list before creating anything", async () => {
    const error = await caught(startFlow(h, alice, { returnTo: "https://app.example.com.evil.com/integrations" }));
    expect(error.fieldViolations.map((v) => v.field)).toEqual(["return_to"]);
    expect(h.sessions.rows.size).toBe(0);
    expect(provider(h, "google").urlInputs).toHaveLength(0);
    const { result } = await startFlow(h, alice, { returnTo: `${RETURN_TO}/google?x=1` });
    expect([...h.sessions.rows.values()][0]?.returnTo).toBe(`${RETURN_TO}/google?x=1`);
    expect(result.sessionId).not.toBe("");
  });

  it("applies the per-user limit to the resolved user, and stores nothing when it refuses", async () => {
    await startFlow(h, backend, { userId: "carol" });
    expect(h.limited).toEqual(["carol"]);
    const limitedHarness = harness({
      limitStart: () => {
        throw new BrokerError("rate_limited", "slow down", { retryAfterMs: 1000 });
      },
    });
    expect((await caught(startFlow(limitedHarness, alice))).code).toBe("rate_limited");
    expect(limitedHarness.sessions.rows.size).toBe(0);
  });

  it("caps the session lifetime at 10 minutes", async () => {
    const long = harness({ settings: () => ({ returnToAllowList: [RETURN_TO], sessionTtlSeconds: 3600 }) });
    const { result } = await startFlow(long, alice);
    expect(result.expiresAt).toEqual(new Date(NOW.getTime() + 600_000));
    expect(result.browserBinding?.maxAgeSeconds).toBe(600);
  });

  it("asks Google for consent again only when the user has no live grant with a refresh token", async () => {
    await startFlow(h, alice);
    expect(provider(h, "google").urlInputs.at(-1)?.forceConsent).toBe(true);
    const { state, result } = await startFlow(h, alice);
    await callback(h, "google", new URLSearchParams({ state, code: "c" }), result.browserBinding?.value);
    await startFlow(h, alice);
    expect(provider(h, "google").urlInputs.at(-1)?.forceConsent).toBe(false);
    await startFlow(h, alice, { provider: "microsoft" });
    expect(provider(h, "microsoft").urlInputs.at(-1)?.forceConsent).toBe(false);
  });

  it("sends no PKCE verifier and no nonce to a provider without PKCE or OIDC (Notion)", async () => {
    const { state, result } = await startFlow(h, alice, { provider: "notion" });
    expect(provider(h, "notion").urlInputs[0]).toMatchObject({ codeVerifier: undefined, nonce: undefined });
    const stored = h.sessions.rows.get(stateHash(state, result.browserBinding?.value));
    expect(stored).toMatchObject({ codeVerifierCiphertext: null, nonce: null });
  });

  it("marks the cookie Secure only for an https public URL", async () => {
    const plain = harness({ publicUrl: new URL("http://127.0.0.1:8080") });
    expect((await startFlow(plain, alice)).result.browserBinding?.secure).toBe(false);
  });
});

describe("the callback", () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });

  it("exchanges the code, stores the grant encrypted for the new integration id in one batch, and redirects with the id", async () => {
    const { state, result, query } = await startFlow(h, alice);
    const outcome = await callback(h, "google", query(), result.browserBinding?.value);
    expect(outcome.kind).toBe("connected");
    if (outcome.kind !== "connected") return;
    const location = new URL(outcome.location);
    expect(location.origin + location.pathname).toBe(RETURN_TO);
    expect(Object.fromEntries(location.searchParams)).toEqual({ integration_id: outcome.integration.id, status: "connected" });
    expect(outcome.location).not.toContain(state);
    expect(outcome.location).not.toContain("code-secret-1");

    const exchange = provider(h, "google").exchanges[0];
    expect(exchange?.expectedState).toBe(state);
    expect(exchange?.redirectUri).toBe("https://broker.example.com/oauth/callback/google");
    expect(exchange?.codeVerifier).toBe(provider(h, "google").urlInputs[0]?.codeVerifier);
    expect(exchange?.nonce).toBe(provider(h, "google").urlInputs[0]?.nonce);
    expect(exchange?.requestedScopes).toEqual(["calendar.read", "openid"]);
    expect(exchange?.callbackUrl.searchParams.get("code")).toBe("code-secret-1");

    expect(h.cipher.batchCalls).toBe(1);
    const write = h.integrations.writes[0];
    expect(write?.id).toBe(outcome.integration.id);
    await expect(h.cipher.decrypt({ ciphertext: write?.tokens.accessTokenCiphertext ?? "", context: outcome.integration.id })).resolves.toBe("at-secret-acct-1");
    await expect(h.cipher.decrypt({ ciphertext: write?.tokens.refreshTokenCiphertext ?? "", context: outcome.integration.id })).resolves.toBe("rt-secret-1");
    expect(write?.grantedScopes).toEqual(["openid", "calendar.read"]);
    expect(h.sessions.rows.size).toBe(0);
    expect(h.audit.map((e) => e.action)).toEqual(["authorization.started", "authorization.completed"]);
    expect(h.audit[1]).toMatchObject({ outcome: "success", userId: "alice", integrationId: outcome.integration.id, scopes: ["openid", "calendar.read"] });
    expect(h.changed).toEqual([]);
  });

  it("records the scopes the provider granted, not the ones asked for", async () => {
    provider(h, "google").grant = grantFor("acct-1", { scopes: ["openid"] });
    const { result, query } = await startFlow(h, alice, { scopes: ["calendar.read", "calendar.write"] });
    const outcome = await callback(h, "google", query(), result.browserBinding?.value);
    expect(outcome.kind === "connected" && outcome.integration.grantedScopes).toEqual(["openid"]);
    expect(h.integrations.writes[0]?.tokens.scopes).toEqual(["openid"]);
  });

  it("reconnecting the same account keeps the integration id and tells the token cache", async () => {
    const first = await startFlow(h, alice);
    const one = await callback(h, "google", first.query(), first.result.browserBinding?.value);
    provider(h, "google").grant = grantFor("acct-1", { accessToken: "at-secret-second", refreshToken: "rt-secret-2" });
    const second = await startFlow(h, alice);
    const two = await callback(h, "google", second.query(), second.result.browserBinding?.value);
    expect(one.kind === "connected" && two.kind === "connected").toBe(true);
    if (one.kind !== "connected" || two.kind !== "connected") return;
    expect(two.integration.id).toBe(one.integration.id);
    expect(h.integrations.rows).toHaveLength(1);
    expect(h.integrations.writes[1]?.id).toBe(one.integration.id);
    await expect(h.cipher.decrypt({ ciphertext: h.integrations.writes[1]?.tokens.accessTokenCiphertext ?? "", context: one.integration.id })).resolves.toBe("at-secret-second");
    expect(h.changed).toEqual([one.integration.id]);
    expect(h.audit.at(-1)?.details).toMatchObject({ created: "false" });
  });

  it("when another flow connected the same account meanwhile, re-encrypts for the winner's id", async () => {
    const first = await startFlow(h, alice);
    const one = await callback(h, "google", first.query(), first.result.browserBinding?.value);
    if (one.kind !== "connected") throw new Error("first flow failed");
    h.integrations.raceOnce = true;
    const second = await startFlow(h, alice);
    const two = await callback(h, "google", second.query(), second.result.browserBinding?.value);
    expect(two.kind === "connected" && two.integration.id).toBe(one.integration.id);
    expect(h.integrations.writes.map((w) => w.id)).toEqual([one.integration.id, expect.not.stringMatching(one.integration.id) as unknown as string, one.integration.id]);
    const last = h.integrations.writes.at(-1);
    await expect(h.cipher.decrypt({ ciphertext: last?.tokens.accessTokenCiphertext ?? "", context: one.integration.id })).resolves.toBe("at-secret-acct-1");
  });

  it("a replayed state finds no session: error page, no second exchange", async () => {
    const { result, query } = await startFlow(h, alice);
    expect((await callback(h, "google", query(), result.browserBinding?.value)).kind).toBe("connected");
    const replay = await callback(h, "google", query(), result.browserBinding?.value);
    expect(replay).toMatchObject({ kind: "rejected", code: "invalid_state" });
    expect(provider(h, "google").exchanges).toHaveLength(1);
    expect(h.audit.at(-1)).toMatchObject({ action: "authorization.failed", reason: "INVALID_STATE" });
  });

  it("a browser-bound state is useless without the browser's cookie, and such attempts cannot touch the session", async () => {
    const { result, query } = await startFlow(h, alice);
    expect(await callback(h, "google", query())).toMatchObject({ kind: "rejected", code: "invalid_state" });
    expect(await callback(h, "google", query(), "another-browsers-cookie")).toMatchObject({ kind: "rejected", code: "invalid_state" });
    // The session survives attempts that cannot name it, and works in its own browser.
    expect((await callback(h, "google", query(), result.browserBinding?.value)).kind).toBe("connected");
    expect(provider(h, "google").exchanges).toHaveLength(1);
  });

  it("an unbound (service-started) flow completes even when the browser holds an unrelated flow cookie", async () => {
    const { query } = await startFlow(h, backend, { userId: "alice" });
    expect((await callback(h, "google", query(), "stale-cookie-of-an-abandoned-flow")).kind).toBe("connected");
  });

  it("says whether the session it used up was the one the binding cookie belongs to", async () => {
    const bound = await startFlow(h, alice);
    expect(await callback(h, "google", bound.query(), bound.result.browserBinding?.value)).toMatchObject({ kind: "connected", consumedBinding: true });
    const denied = await startFlow(h, alice);
    const failed = await callback(h, "google", denied.query({ error: "access_denied" }), denied.result.browserBinding?.value);
    expect(failed).toMatchObject({ kind: "failed", consumedBinding: true });
    // A service-started flow arriving in a browser that holds another flow's cookie.
    const unbound = await startFlow(h, backend, { userId: "alice" });
    expect(await callback(h, "google", unbound.query(), "cookie-of-a-flow-in-progress")).toMatchObject({ kind: "connected", consumedBinding: false });
  });

  it("an expired session sends the browser back with expired_state and is gone afterwards", async () => {
    const { result, query } = await startFlow(h, alice);
    h.clock.advance(301_000);
    const outcome = await callback(h, "google", query(), result.browserBinding?.value);
    expect(outcome).toMatchObject({ kind: "failed", code: "expired_state", location: `${RETURN_TO}?error=expired_state` });
    expect(h.sessions.rows.size).toBe(0);
    expect(provider(h, "google").exchanges).toHaveLength(0);
  });

  it("a state issued for provider A at provider B's callback is refused (mix-up defence)", async () => {
    const { query } = await startFlow(h, backend, { userId: "alice", provider: "microsoft" });
    const outcome = await callback(h, "google", query());
    expect(outcome).toMatchObject({ kind: "failed", code: "invalid_state" });
    expect(outcome.kind === "failed" && outcome.error.reason).toBe("PROVIDER_MISMATCH");
    expect(provider(h, "google").exchanges).toHaveLength(0);
    expect(provider(h, "microsoft").exchanges).toHaveLength(0);
  });

  it("passes the provider's error code to the app (sanitized), and stores nothing", async () => {
    const { result, query } = await startFlow(h, alice);
    const outcome = await callback(h, "google", query({ error: "access_denied", error_description: "The user said no" }), result.browserBinding?.value);
    expect(outcome).toMatchObject({ kind: "failed", code: "access_denied", location: `${RETURN_TO}?error=access_denied` });
    expect(h.integrations.rows).toHaveLength(0);
    expect(h.audit.at(-1)).toMatchObject({ action: "authorization.failed", outcome: "denied", reason: "ACCESS_DENIED" });
    const other = await startFlow(h, alice);
    const weird = await callback(h, "google", other.query({ error: "Invalid-Scope<script>" }), other.result.browserBinding?.value);
    expect(weird).toMatchObject({ kind: "failed", code: "invalidscopescript" });
  });

  it("reports a foreign iss as invalid_issuer (RFC 9207)", async () => {
    const { result, query } = await startFlow(h, alice);
    const outcome = await callback(h, "google", query({ code: "c", iss: "https://attacker.test" }), result.browserBinding?.value);
    expect(outcome).toMatchObject({ kind: "failed", code: "invalid_issuer" });
    expect(h.integrations.rows).toHaveLength(0);
  });

  it("fails closed when the stored verifier does not decrypt or is missing", async () => {
    const { state, result, query } = await startFlow(h, alice);
    const hash = stateHash(state, result.browserBinding?.value);
    const stored = h.sessions.rows.get(hash);
    if (stored === undefined) throw new Error("no session");
    h.sessions.rows.set(hash, { ...stored, codeVerifierCiphertext: await h.cipher.encrypt({ plaintext: "v", context: "another-session" }) });
    const tampered = await callback(h, "google", query(), result.browserBinding?.value);
    expect(tampered).toMatchObject({ kind: "failed", code: "server_error" });
    expect(tampered.kind === "failed" && tampered.error.code).toBe("key_service_error");

    const second = await startFlow(h, alice);
    const secondHash = stateHash(second.state, second.result.browserBinding?.value);
    const secondStored = h.sessions.rows.get(secondHash);
    if (secondStored === undefined) throw new Error("no session");
    h.sessions.rows.set(secondHash, { ...secondStored, codeVerifierCiphertext: null });
    const missing = await callback(h, "google", second.query(), second.result.browserBinding?.value);
    expect(missing).toMatchObject({ kind: "failed", code: "invalid_grant" });
    expect(provider(h, "google").exchanges.filter((e) => e.codeVerifier !== undefined)).toHaveLength(0);
    expect(h.integrations.rows).toHaveLength(0);
  });

  it("bounds the exchange: a provider that never answers ends in temporarily_unavailable and no integration", async () => {
    const slow = harness({ exchangeTimeoutMs: 50 });
    provider(slow, "google").exchangeOverride = () => new Promise<ProviderGrant>(() => {});
    const { result, query } = await startFlow(slow, alice);
    // The exchange never settles: only the 50 ms bound can end the callback, however late it runs.
    const outcome = await callback(slow, "google", query(), result.browserBinding?.value);
    expect(outcome).toMatchObject({ kind: "failed", code: "temporarily_unavailable" });
    expect(outcome.kind === "failed" && outcome.error.reason).toBe("PROVIDER_TIMEOUT");
    expect(provider(slow, "google").exchanges[0]?.signal?.aborted).toBe(true);
    expect(slow.integrations.rows).toHaveLength(0);
  });

  it("stores nothing when the token endpoint fails", async () => {
    provider(h, "google").exchangeOverride = async () => {
      throw new BrokerError("provider_unavailable", "down", { reason: "PROVIDER_UNAVAILABLE" });
    };
    const { result, query } = await startFlow(h, alice);
    expect(await callback(h, "google", query(), result.browserBinding?.value)).toMatchObject({ kind: "failed", code: "temporarily_unavailable" });
    expect(h.integrations.writes).toHaveLength(0);
    expect(h.cipher.batchCalls).toBe(0);
  });

  it("refuses a grant that names no account", async () => {
    provider(h, "google").grant = { tokens: grantFor("x").tokens };
    const { result, query } = await startFlow(h, alice);
    const outcome = await callback(h, "google", query(), result.browserBinding?.value);
    expect(outcome.kind === "failed" && outcome.error.reason).toBe("ACCOUNT_UNKNOWN");
    expect(h.integrations.rows).toHaveLength(0);
  });

  it("answers server_error when the session store is down", async () => {
    const broken = harness({
      sessions: {
        create: async () => undefined,
        consume: async () => {
          throw new BrokerError("database_unavailable", "down");
        },
      },
    });
    expect(await callback(broken, "google", new URLSearchParams({ state: "s", code: "c" }))).toMatchObject({ kind: "rejected", code: "server_error" });
  });
});

describe("CompleteAuthorization", () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });

  const fields = (state: string, extra: Partial<{ code: string; error: string; iss: string }> = {}) => ({
    provider: "google",
    state,
    code: extra.code ?? "code-1",
    iss: extra.iss ?? "",
    error: extra.error ?? "",
    errorDescription: "",
  });

  it("completes a flow for the session's user and returns the integration and return_to", async () => {
    const { state } = await startFlow(h, backend, { userId: "alice", returnTo: `${RETURN_TO}/x` });
    const result = await h.service.complete(ctx(alice), fields(state));
    expect(result.returnTo).toBe(`${RETURN_TO}/x`);
    expect(result.integration).toMatchObject({ userId: "alice", provider: "google", externalAccount: { id: "acct-1" } });
  });

  it("lets a service that may act for the user complete it", async () => {
    const { state } = await startFlow(h, backend, { userId: "alice" });
    await expect(h.service.complete(ctx(backend), fields(state))).resolves.toMatchObject({ integration: { userId: "alice" } });
  });

  it("answers another user as for an unknown state, and the state is used up", async () => {
    const { state } = await startFlow(h, backend, { userId: "alice" });
    const error = await caught(h.service.complete(ctx(bob), fields(state)));
    expect(error).toMatchObject({ code: "authorization_session_invalid", reason: "INVALID_STATE" });
    expect((await caught(h.service.complete(ctx(alice), fields(state)))).reason).toBe("INVALID_STATE");
    expect(h.integrations.rows).toHaveLength(0);
  });

  it("does not find a browser-bound session without the browser's cookie", async () => {
    const { state, result } = await startFlow(h, alice);
    expect((await caught(h.service.complete(ctx(alice), fields(state)))).reason).toBe("INVALID_STATE");
    const again = await startFlow(h, alice);
    await expect(h.service.complete(ctx(alice), { ...fields(again.state), binding: again.result.browserBinding?.value })).resolves.toBeDefined();
    expect(result.browserBinding).toBeDefined();
  });

  it("maps expiry, provider mismatch and denial to errors", async () => {
    const expired = await startFlow(h, backend, { userId: "alice" });
    h.clock.advance(400_000);
    expect(await caught(h.service.complete(ctx(alice), fields(expired.state)))).toMatchObject({ code: "authorization_session_invalid", reason: "EXPIRED_STATE" });
    const mismatch = await startFlow(h, backend, { userId: "alice", provider: "microsoft" });
    expect(await caught(h.service.complete(ctx(alice), fields(mismatch.state)))).toMatchObject({ reason: "PROVIDER_MISMATCH" });
    const denied = await startFlow(h, backend, { userId: "alice" });
    const error = await caught(h.service.complete(ctx(alice), fields(denied.state, { code: "", error: "access_denied" })));
    expect(error).toMatchObject({ code: "authorization_denied", reason: "ACCESS_DENIED" });
    expect(h.audit.filter((e) => e.action === "authorization.failed").map((e) => e.reason)).toEqual(["EXPIRED_STATE", "PROVIDER_MISMATCH", "ACCESS_DENIED"]);
  });

  it("validates its fields", async () => {
    expect((await caught(h.service.complete(ctx(alice), fields("")))).fieldViolations[0]?.field).toBe("state");
    expect((await caught(h.service.complete(ctx(alice), fields("s", { code: "" })))).fieldViolations[0]?.field).toBe("code");
    expect((await caught(h.service.complete(ctx(alice), { ...fields("s"), provider: "nope" }))).fieldViolations[0]?.field).toBe("provider");
  });
});

describe("error codes for the app's URL", () => {
  const invalid = (reason: ErrorReason) => new BrokerError("authorization_session_invalid", "x", { reason });
  it.each([
    [invalid("ISSUER_MISMATCH"), undefined, "invalid_issuer"],
    [invalid("ISSUER_MISSING"), undefined, "invalid_issuer"],
    [invalid("EXPIRED_STATE"), undefined, "expired_state"],
    [invalid("AUTHORIZATION_CODE_REJECTED"), undefined, "invalid_grant"],
    [invalid("VERIFIER_MISSING"), undefined, "invalid_grant"],
    [invalid("PROVIDER_MISMATCH"), undefined, "invalid_state"],
    [invalid("STATE_MISMATCH"), undefined, "invalid_state"],
    [invalid("NONCE_MISMATCH"), undefined, "invalid_state"],
    [new BrokerError("authorization_denied", "x", { reason: "CONSENT_REQUIRED", metadata: { error: "consent_required" } }), "consent_required", "consent_required"],
    [new BrokerError("provider_misconfigured", "x", { reason: "AUTHORIZATION_REQUEST_REJECTED", metadata: { error: "invalid_scope" } }), "invalid_scope", "invalid_scope"],
    [new BrokerError("provider_unavailable", "x", { metadata: { error: "server_error" } }), "server_error", "server_error"],
    [new BrokerError("provider_unavailable", "x"), undefined, "temporarily_unavailable"],
    [new BrokerError("provider_unavailable", "discovery failed"), "access_denied", "temporarily_unavailable"],
    [new BrokerError("provider_rate_limited", "x"), undefined, "temporarily_unavailable"],
    [new BrokerError("deadline_exceeded", "x"), undefined, "temporarily_unavailable"],
    [new BrokerError("provider_misconfigured", "x", { reason: "PROVIDER_CLIENT_REJECTED" }), undefined, "server_error"],
    [new BrokerError("key_service_error", "x", { reason: "KEY_SERVICE_REFUSED" }), undefined, "server_error"],
    [new Error("boom"), undefined, "server_error"],
  ])("%o (provider error %s) → %s", (error, providerError, expected) => {
    expect(callbackErrorCode(error, providerError)).toBe(expected);
  });

  it("sanitizes provider codes to [a-z_]", () => {
    expect(sanitizeErrorCode("access_denied")).toBe("access_denied");
    expect(sanitizeErrorCode("ACCESS_DENIED")).toBe("access_denied");
    expect(sanitizeErrorCode("x&status=connected&integration_id=1")).toBe("xstatusconnectedintegration_id");
    expect(sanitizeErrorCode("%%%")).toBe("server_error");
    expect(sanitizeErrorCode("a".repeat(100))).toHaveLength(64);
  });

  it("names cookies safely per provider", () => {
    expect(flowCookieName("google")).toBe("oauth_broker_flow_google");
    expect(flowCookieName("my idp;x=1")).toBe("oauth_broker_flow_my_idp_x_1");
  });

  it("hashes the state alone or with its binding", () => {
    const state = randomUUID();
    expect(stateHash(state)).toBe(sha256(state));
    expect(stateHash(state, "b")).toBe(sha256(`${state}.b`));
    expect(isBrokerError(new BrokerError("internal", "x"))).toBe(true);
  });
});

describe("no widened grants", () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });

  it("revokes a grant with scopes nobody asked for, stores nothing, and sends the app error=invalid_scope", async () => {
    provider(h, "google").revocationResult = { outcome: "revoked" };
    provider(h, "google").grant = grantFor("acct-1", { refreshToken: "rt-wide", scopes: ["openid", "calendar.read", "calendar.write"] });
    const { result, query } = await startFlow(h, alice, { scopes: ["calendar.read"] });
    const outcome = await callback(h, "google", query(), result.browserBinding?.value);
    expect(outcome).toMatchObject({ kind: "failed", code: "invalid_scope", location: `${RETURN_TO}?error=invalid_scope`, consumedBinding: true });
    expect(outcome.kind === "failed" && outcome.error).toMatchObject({ code: "authorization_denied", reason: "SCOPE_WIDENED" });
    expect(h.integrations.writes).toHaveLength(0);
    expect(h.cipher.batchCalls).toBe(0);
    expect(provider(h, "google").revocations).toEqual([{ token: "rt-wide", hint: "refresh_token" }]);
    expect(h.audit.at(-1)).toMatchObject({
      action: "authorization.failed",
      reason: "SCOPE_WIDENED",
      userId: "alice",
      provider: "google",
      details: { code: "authorization_denied", widened_scopes: "calendar.write", widened_count: "1", revocation: "revoked" },
    });
  });

  it("accepts scopes the integration already held (incremental consent returns earlier grants)", async () => {
    provider(h, "google").grant = grantFor("acct-1", { scopes: ["openid", "calendar.write"] });
    const first = await startFlow(h, alice, { scopes: ["calendar.write"] });
    expect((await callback(h, "google", first.query(), first.result.browserBinding?.value)).kind).toBe("connected");
    provider(h, "google").grant = grantFor("acct-1", { scopes: ["openid", "calendar.read", "calendar.write"] });
    const second = await startFlow(h, alice, { scopes: ["calendar.read"] });
    expect((await callback(h, "google", second.query(), second.result.browserBinding?.value)).kind).toBe("connected");
    // Another account of the same user holds nothing yet: the same grant is wider for it.
    provider(h, "google").grant = grantFor("acct-2", { scopes: ["openid", "calendar.read", "calendar.write"] });
    const third = await startFlow(h, alice, { scopes: ["calendar.read"] });
    expect(await callback(h, "google", third.query(), third.result.browserBinding?.value)).toMatchObject({ kind: "failed", code: "invalid_scope" });
    expect(provider(h, "google").revocations).toHaveLength(1);
  });

  it("compares scopes in the provider's own spelling", async () => {
    const google = provider(h, "google");
    Object.assign(google, { canonicalScope: (scope: string) => (scope === "https://www.googleapis.com/auth/calendar.read" ? "calendar.read" : scope) });
    google.grant = grantFor("acct-1", { scopes: ["openid", "https://www.googleapis.com/auth/calendar.read"] });
    const { result, query } = await startFlow(h, alice, { scopes: ["calendar.read"] });
    const outcome = await callback(h, "google", query(), result.browserBinding?.value);
    expect(outcome.kind === "connected" && outcome.integration.grantedScopes).toEqual(["openid", "https://www.googleapis.com/auth/calendar.read"]);
  });

  it("revokes the access token when there is no refresh token, and refuses even when revocation fails", async () => {
    const google = provider(h, "google");
    google.revocationResult = new BrokerError("provider_unavailable", "down");
    google.grant = grantFor("acct-1", { accessToken: "at-wide", scopes: Array.from({ length: 12 }, (_, i) => `extra.${i}`) });
    const { result, query } = await startFlow(h, alice);
    const outcome = await callback(h, "google", query(), result.browserBinding?.value);
    expect(outcome).toMatchObject({ kind: "failed", code: "invalid_scope" });
    expect(google.revocations).toEqual([{ token: "at-wide", hint: "access_token" }]);
    expect(h.integrations.writes).toHaveLength(0);
    expect(h.audit.at(-1)?.details).toMatchObject({ widened_count: "12", revocation: "failed" });
    expect(outcome.kind === "failed" && outcome.error.message).toMatch(/\(extra\.0 .* extra\.9 and 2 more\)/);
  });

  it("counts scopes the account granted the same client through another user or another provider entry as held", async () => {
    // A YouTube entry on the same Google client: Google returns its scopes with every new grant.
    h.configs.push(testProviderConfig({ id: "youtube", kind: "youtube", clientSecret: "s" }));
    h.integrations.rows.push(seededIntegration({ id: "yt-bob", userId: "bob", provider: "youtube", accountId: "acct-1", scopes: ["youtube.readonly"] }));
    provider(h, "google").grant = grantFor("acct-1", { scopes: ["openid", "calendar.read", "youtube.readonly"] });
    const { result, query } = await startFlow(h, alice, { scopes: ["calendar.read"] });
    expect((await callback(h, "google", query(), result.browserBinding?.value)).kind).toBe("connected");
    // A different client id is a different grant at Google: its scopes are not held here.
    h.configs[h.configs.length - 1] = testProviderConfig({ id: "youtube", kind: "youtube", clientId: "other-client", clientSecret: "s" });
    provider(h, "google").grant = grantFor("acct-9", { scopes: ["openid", "calendar.read", "youtube.readonly"] });
    h.integrations.rows.push(seededIntegration({ id: "yt-carl", userId: "carl", provider: "youtube", accountId: "acct-9", scopes: ["youtube.readonly"] }));
    const second = await startFlow(h, alice, { scopes: ["calendar.read"] });
    expect(await callback(h, "google", second.query(), second.result.browserBinding?.value)).toMatchObject({ kind: "failed", code: "invalid_scope" });
  });

  it("marks the account's existing integrations needs_reauth when revoking the widened grant ended the whole Google grant", async () => {
    h.integrations.rows.push(seededIntegration({ id: "g-alice", userId: "alice", provider: "google", accountId: "acct-1", scopes: ["openid", "calendar.read"] }));
    const google = provider(h, "google");
    google.revocationResult = { outcome: "revoked" };
    google.grant = grantFor("acct-1", { refreshToken: "rt-wide", scopes: ["openid", "calendar.read", "drive"] });
    const { result, query } = await startFlow(h, alice, { scopes: ["calendar.read"] });
    const outcome = await callback(h, "google", query(), result.browserBinding?.value);
    expect(outcome).toMatchObject({ kind: "failed", code: "invalid_scope" });
    expect(h.integrations.rows.find((row) => row.id === "g-alice")).toMatchObject({ status: "needs_reauth", statusReason: "grant_revoked_scope_widened" });
    expect(h.changed).toContain("g-alice");
    expect(h.audit.at(-1)?.details).toMatchObject({
      revocation: "revoked",
      needs_reauth_count: "1",
      needs_reauth_integrations: "g-alice",
      needs_reauth_reason: "grant_revoked_scope_widened",
    });
    // Ids stay in the audit trail: the caller's error does not list integrations.
    expect(outcome.kind === "failed" && outcome.error.metadata).not.toHaveProperty("needs_reauth_integrations");
    expect(outcome.kind === "failed" && outcome.error.message).toMatch(/existing connection must be reconnected/);
  });

  it("leaves the existing integration active where revocation ends only the new grant, or did not happen", async () => {
    h.integrations.rows.push(seededIntegration({ id: "m-alice", userId: "alice", provider: "microsoft", accountId: "acct-1", scopes: ["User.Read"] }));
    const microsoft = provider(h, "microsoft");
    microsoft.revocationResult = { outcome: "revoked" };
    microsoft.grant = grantFor("acct-1", { scopes: ["User.Read", "Mail.Read"] });
    const { result, query } = await startFlow(h, alice, { provider: "microsoft", scopes: ["User.Read"] });
    expect(await callback(h, "microsoft", query(), result.browserBinding?.value)).toMatchObject({ kind: "failed", code: "invalid_scope" });
    expect(h.integrations.rows.find((row) => row.id === "m-alice")).toMatchObject({ status: "active" });
    h.integrations.rows.push(seededIntegration({ id: "g-alice", userId: "alice", provider: "google", accountId: "acct-1", scopes: ["openid"] }));
    provider(h, "google").revocationResult = { outcome: "retry_later", retryAfterMs: 1000 };
    provider(h, "google").grant = grantFor("acct-1", { scopes: ["openid", "drive"] });
    const second = await startFlow(h, alice);
    expect(await callback(h, "google", second.query(), second.result.browserBinding?.value)).toMatchObject({ kind: "failed", code: "invalid_scope" });
    expect(h.integrations.rows.find((row) => row.id === "g-alice")).toMatchObject({ status: "active" });
  });

  it("logs a failed revocation at warn with its cause, never the token, and puts the cause in the audit details", async () => {
    const { logger, log } = captureLogger();
    h = harness({ logger });
    const google = provider(h, "google");
    google.revocationResult = new BrokerError("provider_unavailable", "revocation endpoint answered 503");
    google.grant = grantFor("acct-1", { refreshToken: "rt-wide-secret", scopes: ["openid", "drive"] });
    const { result, query } = await startFlow(h, alice);
    expect(await callback(h, "google", query(), result.browserBinding?.value)).toMatchObject({ kind: "failed", code: "invalid_scope" });
    expect(h.audit.at(-1)?.details).toMatchObject({ revocation: "failed", revocation_error: "provider_unavailable" });
    const warnings = log.lines.filter((line) => line["level"] === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.["msg"]).toMatch(/could not revoke a widened grant/);
    expect(warnings[0]).toMatchObject({ provider: "google", cause: "provider_unavailable" });
    expect(log.text()).not.toContain("rt-wide-secret");
  });

  it("fails CompleteAuthorization with authorization_denied SCOPE_WIDENED", async () => {
    provider(h, "google").grant = grantFor("acct-1", { scopes: ["openid", "calendar.read", "drive"] });
    const { state } = await startFlow(h, backend, { userId: "alice" });
    const error = await caught(h.service.complete(ctx(alice), { provider: "google", state, code: "c", iss: "", error: "", errorDescription: "" }));
    expect(error).toMatchObject({ code: "authorization_denied", reason: "SCOPE_WIDENED", metadata: { error: "invalid_scope", widened_scopes: "drive" } });
    expect(h.integrations.writes).toHaveLength(0);
    expect(h.audit.at(-1)).toMatchObject({ action: "authorization.failed", reason: "SCOPE_WIDENED", caller: "alice" });
  });
});
