/**
 * The authorization flow end to end inside one process: the AuthorizationService handlers and
 * the callback route on a real HTTP listener, real PostgreSQL, the local keyring cipher, and the
 * provider peers (Google-like, Microsoft-like, Notion look-alike) and the sandbox provider, with
 * the browser driven headlessly (HTTP + cookies) through the real consent pages. Then the
 * security cases of oauth-client-security.md, and a search for leaked secrets in every redirect,
 * response body, log line and audit event.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEventInput, Cipher } from "../../src/domain/ports.js";
import { createAuthorizationService, type AuthorizationService as Flow } from "../../src/domain/authorization-service.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { createProviderRegistry } from "../../src/providers/provider-registry.js";
import { createSandboxProvider, type SandboxProvider } from "../../src/providers/sandbox-provider.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createSessionRepository } from "../../src/storage/session-repository.js";
import { createAuthorizationServiceHandlers } from "../../src/transport/handlers/authorization-service.js";
import type { HttpRoute } from "../../src/transport/http-listener.js";
import { createOAuthCallbackRoute } from "../../src/transport/oauth-callback-route.js";
import { bindService } from "../../src/transport/service-binding.js";
import { namedCallers, startTransportFixture, type TransportFixture } from "../support/transport-fixture.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { createBrowser, type Browser, type ConsentChoices } from "../support/peers/browser.js";
import { arriveAtCallback, consentAtProvider, startAuthorization } from "../support/browser-flow.js";
import type { ProviderConfig } from "../../src/config/types.js";
import type { NotionPeer } from "../support/peers/notion-peer.js";
import type { OidcPeer } from "../support/peers/oidc-peer.js";
import { startFlowPeers } from "../support/peers/flow-peers.js";
import { testProviderConfig } from "../support/peers/provider-config.js";
import { captureLogger } from "../support/log-capture.js";

const GOOGLE_SECRET = "g00gle:secret+with/odd=chars%&";
const MICROSOFT_SECRET = "ms~secret.value_1";
const NOTION_SECRET = "secret_n0tion:+/=%";
const TTL_SECONDS = 300;
const EXCHANGE_TIMEOUT_MS = 4_000;

type ProviderId = "google" | "microsoft" | "notion" | "sandbox";

interface RpcAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly json: Record<string, unknown>;
}

interface IntegrationRow {
  id: string;
  user_id: string;
  provider: string;
  external_account_id: string;
  external_account_name: string;
  external_account_attributes: Record<string, string>;
  granted_scopes: string[];
  status: string;
  access_token_ciphertext: string;
  refresh_token_ciphertext: string | null;
  scopes: string[];
  expires_at: Date;
}

describe("authorization flow", () => {
  const { logger, log } = captureLogger();
  const audit: AuditEventInput[] = [];
  const changed: string[] = [];
  /** Every secret seen during the run: none may appear in any observed output. */
  const secrets = new Set<string>([GOOGLE_SECRET, MICROSOFT_SECRET, NOTION_SECRET]);
  /** Every callback answer: Location headers and bodies. */
  const observed: string[] = [];
  let db: TestDatabase;
  let dataDir: string;
  let cipher: Cipher;
  let listener: TransportFixture;
  let base: string;
  let google: OidcPeer;
  let microsoft: OidcPeer;
  let notion: NotionPeer;
  let peerConfigs: ProviderConfig[];
  let sandbox: SandboxProvider;
  let flow: Flow;
  let returnTo: string;

  /** Callers name themselves (`user:alice`); the policy set below decides what they may call. */
  const callers = namedCallers();

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-authz-"));
    cipher = await createLocalKeyringCipher({ dataDir, logger });
    let routes: HttpRoute[] = [];
    const lateFlow: Pick<Flow, "start" | "complete"> = {
      start: (ctx, input) => flow.start(ctx, input),
      complete: (ctx, input) => flow.complete(ctx, input),
    };
    listener = await startTransportFixture({
      bindings: [bindService(AuthorizationService, createAuthorizationServiceHandlers({ service: lateFlow }))],
      authentication: callers,
      routes: [
        async (req, res, url) => {
          for (const route of routes) if (await route(req, res, url)) return true;
          return false;
        },
      ],
    });
    base = listener.httpUrl;
    returnTo = "https://app.example.com/settings/integrations";
    const publicUrl = new URL(base);
    const redirect = (id: ProviderId) => `${base}/oauth/callback/${id}`;

    ({ google, microsoft, notion, configs: peerConfigs } = await startFlowPeers(
      { google: GOOGLE_SECRET, microsoft: MICROSOFT_SECRET, notion: NOTION_SECRET },
      redirect,
    ));
    sandbox = await createSandboxProvider({ publicUrl, redirectUri: redirect("sandbox"), logger });

    const configs = [
      ...peerConfigs,
      testProviderConfig({ id: "sandbox", kind: "sandbox", clientId: undefined, defaultScopes: ["sandbox.read"], allowedScopes: ["sandbox.write"] }),
    ];
    const registry = await createProviderRegistry(configs, { publicUrl, sandbox, logger });
    const policy = createRpcPolicy({
      providers: configs,
      policies: [{ service: "backend", providers: ["*"], scopes: ["*"], actForUsers: true, rpcs: ["AuthorizationService/*"], strict: false }],
    });
    callers.policyHolder.replace(policy);
    flow = createAuthorizationService({
      providers: { list: () => registry.profiles(), client: (id) => registry.get(id), redirectUri: (id) => registry.redirectUri(id) },
      policy: () => policy,
      sessions: createSessionRepository(db.sql),
      integrations: createIntegrationRepository(db.sql),
      cipher,
      audit: { record: async (event) => void audit.push(event) },
      settings: () => ({ returnToAllowList: [returnTo, "http://localhost:5173/"], sessionTtlSeconds: TTL_SECONDS }),
      publicUrl,
      onIntegrationChanged: (id) => void changed.push(id),
      exchangeTimeoutMs: EXCHANGE_TIMEOUT_MS,
    });
    routes = [
      (req, res) => sandbox.handle(req as IncomingMessage, res as ServerResponse),
      createOAuthCallbackRoute({ service: flow, publicUrl, logger }),
    ];
  });

  afterAll(async () => {
    await listener?.close();
    await Promise.all([google?.close(), microsoft?.close(), notion?.close(), sandbox?.close()]);
    await cipher?.close();
    await db?.drop();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  async function rpc(method: "StartAuthorization" | "CompleteAuthorization", principal: string, body: Record<string, unknown>): Promise<RpcAnswer> {
    const response = await fetch(`${base}/oauthbroker.v1.AuthorizationService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${principal}` },
      body: JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, json: (await response.json()) as Record<string, unknown> };
  }

  interface Started {
    readonly url: URL;
    readonly state: string;
    readonly sessionId: string;
    readonly setCookie: string | undefined;
  }

  /** StartAuthorization; a user's binding cookie lands in `browser`. */
  async function start(principal: string, body: Record<string, unknown>, browser?: Browser): Promise<Started> {
    const started = await startAuthorization(base, { authorization: `Bearer ${principal}` }, body, browser);
    const url = started.authorizationUrl;
    const state = url.searchParams.get("state") ?? "";
    secrets.add(state);
    return { url, state, sessionId: String(started.json["sessionId"]), setCookie: started.setCookie };
  }

  /** The browser at the provider: sign-in and consent pages, up to the redirect to the broker. */
  async function consent(provider: ProviderId, url: URL, choices: ConsentChoices, browser: Browser): Promise<URL> {
    const callbackUrl = await consentAtProvider(url, choices, browser, provider);
    const code = callbackUrl.searchParams.get("code");
    if (code !== null) secrets.add(code);
    return callbackUrl;
  }

  /** The browser arriving at the broker's callback. */
  async function arrive(browser: Browser, callbackUrl: URL): Promise<{ response: Response; location: URL | undefined; body: string }> {
    const { response, location } = await arriveAtCallback(browser, callbackUrl);
    const body = await response.text();
    observed.push(body, response.headers.get("location") ?? "");
    expect(response.headers.get("referrer-policy")).toBe("no-referrer");
    expect(response.headers.get("cache-control")).toBe("no-store");
    return { response, location, body };
  }

  /** The code verifier a session holds (decrypted), so the leak search can look for it. */
  async function rememberVerifier(sessionId: string): Promise<void> {
    const [row] = await db.sql<{ code_verifier_ciphertext: string | null }[]>`
      select code_verifier_ciphertext from authorization_sessions where id = ${sessionId}`;
    if (row?.code_verifier_ciphertext) secrets.add(await cipher.decrypt({ ciphertext: row.code_verifier_ciphertext, context: sessionId }));
  }

  /** A user connects an account from their browser; returns where the browser ends up. */
  async function connect(provider: ProviderId, user: string, username: string, options: { scopes?: string[]; grantScopes?: string[]; deny?: boolean } = {}) {
    const browser = createBrowser();
    const started = await start(`user:${user}`, { provider, scopes: options.scopes ?? [], returnTo: "" }, browser);
    await rememberVerifier(started.sessionId);
    const callbackUrl = await consent(provider, started.url, { username, grantScopes: options.grantScopes, deny: options.deny }, browser);
    const arrival = await arrive(browser, callbackUrl);
    return { ...arrival, started, callbackUrl, browser };
  }

  async function integrationRows(where: { user: string; provider: string }): Promise<IntegrationRow[]> {
    const rows = await db.sql<IntegrationRow[]>`
      select i.*, t.access_token_ciphertext, t.refresh_token_ciphertext, t.scopes, t.expires_at
      from integrations i join token_sets t on t.integration_id = i.id
      where i.user_id = ${where.user} and i.provider = ${where.provider}
      order by i.created_at`;
    for (const row of rows) {
      secrets.add(await cipher.decrypt({ ciphertext: row.access_token_ciphertext, context: row.id }));
      if (row.refresh_token_ciphertext !== null) secrets.add(await cipher.decrypt({ ciphertext: row.refresh_token_ciphertext, context: row.id }));
    }
    return [...rows];
  }

  async function sessionCount(): Promise<number> {
    const [row] = await db.sql<{ count: number }[]>`select count(*)::int as count from authorization_sessions`;
    return row?.count ?? -1;
  }

  function connectedId(location: URL | undefined): string {
    expect(location?.origin + (location?.pathname ?? "")).toBe(returnTo);
    expect([...(location?.searchParams.keys() ?? [])].sort()).toEqual(["integration_id", "status"]);
    expect(location?.searchParams.get("status")).toBe("connected");
    return location?.searchParams.get("integration_id") ?? "";
  }

  describe("connects an account", () => {
    it("with the Google-like peer: binding cookie, 303 to return_to, encrypted tokens that work, granted scopes", async () => {
      const browser = createBrowser();
      const started = await start("user:alice", { provider: "google", scopes: ["email", "calendar.read"], returnTo: "" }, browser);
      expect(started.setCookie).toMatch(/^oauth_broker_flow_google=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Lax; Path=\/oauth\/callback\/google; Max-Age=300$/);
      expect(started.url.searchParams.get("prompt")).toBe("consent");
      expect(started.url.searchParams.get("code_challenge_method")).toBe("S256");
      expect(started.url.searchParams.get("redirect_uri")).toBe(`${base}/oauth/callback/google`);
      await rememberVerifier(started.sessionId);
      const callbackUrl = await consent("google", started.url, { username: "alice-g" }, browser);
      const { response, location } = await arrive(browser, callbackUrl);
      expect(response.status).toBe(303);
      expect(response.headers.getSetCookie().join()).toMatch(/oauth_broker_flow_google=; .*Max-Age=0/);
      const id = connectedId(location);

      const [row, ...more] = await integrationRows({ user: "alice", provider: "google" });
      expect(more).toHaveLength(0);
      expect(row).toMatchObject({
        id,
        external_account_id: google.accountIds("alice-g").sub,
        external_account_name: "alice-g@example.test",
        status: "active",
      });
      expect(row?.access_token_ciphertext).toMatch(/^local:v1:/);
      expect(row?.refresh_token_ciphertext).toMatch(/^local:v1:/);
      expect([...(row?.granted_scopes ?? [])].sort()).toEqual(["calendar.read", "email", "openid"]);
      const accessToken = await cipher.decrypt({ ciphertext: row?.access_token_ciphertext ?? "", context: id });
      const userinfo = await fetch(`${google.issuer}/me`, { headers: { authorization: `Bearer ${accessToken}` } });
      expect(userinfo.status).toBe(200);
      expect(await sessionCount()).toBe(0);
      expect(audit.filter((e) => e.integrationId === id).map((e) => e.action)).toEqual(["authorization.completed"]);
    });

    it("with the Microsoft-like peer: oid account with tenant, refresh token from offline_access", async () => {
      const { response, location } = await connect("microsoft", "alice", "alice-m");
      expect(response.status).toBe(303);
      const id = connectedId(location);
      const [row] = await integrationRows({ user: "alice", provider: "microsoft" });
      expect(row).toMatchObject({ id, external_account_id: microsoft.accountIds("alice-m").oid, external_account_attributes: { tid: microsoft.tenantId } });
      expect(row?.refresh_token_ciphertext).toMatch(/^local:v1:/);
      expect(row?.granted_scopes).toEqual(expect.arrayContaining(["User.Read", "offline_access", "openid", "profile"]));
    });

    it("with the Notion look-alike: bot id account, no PKCE, a token the peer accepts", async () => {
      const { response, location, started } = await connect("notion", "alice", "alice-n");
      expect(started.url.searchParams.get("code_challenge")).toBeNull();
      expect(response.status).toBe(303);
      const id = connectedId(location);
      const [row] = await integrationRows({ user: "alice", provider: "notion" });
      const installation = notion.installation("alice-n", "broker-client");
      expect(row).toMatchObject({ id, external_account_id: installation.botId, external_account_attributes: { workspace_id: installation.workspaceId } });
      expect(notion.isAccessTokenValid(await cipher.decrypt({ ciphertext: row?.access_token_ciphertext ?? "", context: id }))).toBe(true);
      // No expires_in from Notion: the configured default lifetime applies, never "forever".
      expect(row?.expires_at.getTime()).toBeLessThanOrEqual(Date.now() + 3600_000);
    });

    it("with the sandbox provider mounted on the same listener", async () => {
      const { response, location } = await connect("sandbox", "alice", "newcomer");
      expect(response.status).toBe(303);
      const id = connectedId(location);
      const [row] = await integrationRows({ user: "alice", provider: "sandbox" });
      expect(row).toMatchObject({ id, external_account_id: "newcomer" });
      // Asked for offline_access (the sandbox advertises it) besides the caller's scope: refreshable.
      expect([...(row?.granted_scopes ?? [])].sort()).toEqual(["offline_access", "openid", "sandbox.read"]);
      expect(row?.refresh_token_ciphertext).toMatch(/^local:v1:/);
    });

    it("reconnecting the same account keeps the integration id, replaces the tokens and notifies the cache", async () => {
      const first = await connect("google", "dora", "dora-g");
      const id = connectedId(first.location);
      const [before] = await integrationRows({ user: "dora", provider: "google" });
      const second = await connect("google", "dora", "dora-g");
      expect(second.started.url.searchParams.get("prompt")).toBeNull();
      expect(connectedId(second.location)).toBe(id);
      const rows = await integrationRows({ user: "dora", provider: "google" });
      expect(rows).toHaveLength(1);
      expect(rows[0]?.access_token_ciphertext).not.toBe(before?.access_token_ciphertext);
      expect(rows[0]?.refresh_token_ciphertext).toMatch(/^local:v1:/);
      expect(changed).toContain(id);
      // Another account of the same user is another integration.
      const other = await connect("google", "dora", "dora-work");
      expect(connectedId(other.location)).not.toBe(id);
    });

    it("records the scopes granted, not the ones asked for", async () => {
      const { location } = await connect("google", "erin", "erin-g", { scopes: ["calendar.read", "calendar.write"], grantScopes: ["calendar.read"] });
      connectedId(location);
      const [row] = await integrationRows({ user: "erin", provider: "google" });
      expect([...(row?.granted_scopes ?? [])].sort()).toEqual(["calendar.read", "openid"]);
      expect([...(row?.scopes ?? [])].sort()).toEqual(["calendar.read", "openid"]);
    });

    it("CompleteAuthorization finishes a flow the app received itself", async () => {
      const browser = createBrowser();
      const started = await start("service:backend", { provider: "google", userId: "frank", returnTo: "http://localhost:5173/done" });
      expect(started.setCookie).toBeUndefined();
      await rememberVerifier(started.sessionId);
      const callbackUrl = await consent("google", started.url, { username: "frank-g" }, browser);
      const q = callbackUrl.searchParams;
      const answer = await rpc("CompleteAuthorization", "user:frank", {
        provider: "google",
        state: q.get("state"),
        code: q.get("code"),
        iss: q.get("iss") ?? "",
      });
      expect(answer.status, JSON.stringify(answer.json)).toBe(200);
      expect(answer.headers.get("cache-control")).toBe("no-store");
      expect(answer.json).toMatchObject({ returnTo: "http://localhost:5173/done", integration: { userId: "frank", provider: "google", externalAccountId: google.accountIds("frank-g").sub } });
      observed.push(JSON.stringify(answer.json));
    });
  });

  describe("security", () => {
    it("a replayed callback finds no session: a self-contained 400 page, no second token request", async () => {
      const { callbackUrl, browser, location } = await connect("google", "gina", "gina-g");
      connectedId(location);
      const tokenRequests = google.tokenRequests();
      const replay = await arrive(browser, callbackUrl);
      expect(replay.response.status).toBe(400);
      expect(replay.response.headers.get("content-type")).toMatch(/^text\/html/);
      expect(replay.response.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(replay.body).toContain("invalid_state");
      expect(replay.body).not.toMatch(/(src|href)=/);
      expect(google.tokenRequests()).toBe(tokenRequests);
    });

    it("a callback in another browser (no binding cookie) finds no session and leaves the real one intact", async () => {
      const browser = createBrowser();
      const started = await start("user:hana", { provider: "google", returnTo: "" }, browser);
      const callbackUrl = await consent("google", started.url, { username: "hana-g" }, browser);
      const attacker = await arrive(createBrowser(), callbackUrl);
      expect(attacker.response.status).toBe(400);
      expect(await integrationRows({ user: "hana", provider: "google" })).toHaveLength(0);
      const owner = await arrive(browser, callbackUrl);
      expect(owner.response.status).toBe(303);
      connectedId(owner.location);
    });

    it("an expired session sends the browser back with error=expired_state, and is deleted", async () => {
      const browser = createBrowser();
      const started = await start("user:ivan", { provider: "google", returnTo: "" }, browser);
      const callbackUrl = await consent("google", started.url, { username: "ivan-g" }, browser);
      await db.sql`update authorization_sessions set expires_at = now() - interval '1 second' where id = ${started.sessionId}`;
      const tokenRequests = google.tokenRequests();
      const { response, location } = await arrive(browser, callbackUrl);
      expect(response.status).toBe(303);
      expect(location?.href).toBe(`${returnTo}?error=expired_state`);
      expect(google.tokenRequests()).toBe(tokenRequests);
      expect((await db.sql`select 1 from authorization_sessions where id = ${started.sessionId}`).length).toBe(0);
    });

    it("a state issued to another user cannot be completed by them", async () => {
      const started = await start("service:backend", { provider: "google", userId: "jack", returnTo: "" });
      const callbackUrl = await consent("google", started.url, { username: "jack-g" }, createBrowser());
      const q = callbackUrl.searchParams;
      const answer = await rpc("CompleteAuthorization", "user:mallory", { provider: "google", state: q.get("state"), code: q.get("code"), iss: q.get("iss") ?? "" });
      expect(answer.status).toBe(400);
      expect(answer.json).toMatchObject({ code: "failed_precondition" });
      expect(String(answer.json["message"])).toMatch(/authorization session is unknown, already used, or belongs to someone else/);
      expect(await integrationRows({ user: "jack", provider: "google" })).toHaveLength(0);
      expect(await integrationRows({ user: "mallory", provider: "google" })).toHaveLength(0);
    });

    it("a state from provider A at provider B's callback is refused (mix-up defence)", async () => {
      const started = await start("service:backend", { provider: "google", userId: "kate", returnTo: "" });
      const callbackUrl = await consent("google", started.url, { username: "kate-g" }, createBrowser());
      const atMicrosoft = new URL(callbackUrl);
      atMicrosoft.pathname = "/oauth/callback/microsoft";
      const msRequests = microsoft.tokenRequests();
      const { response, location } = await arrive(createBrowser(), atMicrosoft);
      expect(response.status).toBe(303);
      expect(location?.href).toBe(`${returnTo}?error=invalid_state`);
      expect(microsoft.tokenRequests()).toBe(msRequests);
      // The session was used up by the attempt.
      expect((await arrive(createBrowser(), callbackUrl)).response.status).toBe(400);
      expect(await integrationRows({ user: "kate", provider: "google" })).toHaveLength(0);
    });

    it("fails closed on a tampered, foreign or missing PKCE verifier", async () => {
      const attempt = async (user: string, tamper: (sessionId: string) => Promise<void>) => {
        const browser = createBrowser();
        const started = await start(`user:${user}`, { provider: "google", returnTo: "" }, browser);
        await rememberVerifier(started.sessionId);
        const callbackUrl = await consent("google", started.url, { username: `${user}-g` }, browser);
        await tamper(started.sessionId);
        const result = await arrive(browser, callbackUrl);
        expect(await integrationRows({ user, provider: "google" })).toHaveLength(0);
        return result.location?.searchParams.get("error");
      };
      // A flipped ciphertext byte fails authentication in the key service.
      const flipped = await attempt("leo", async (id) => {
        await db.sql`update authorization_sessions set code_verifier_ciphertext = overlay(code_verifier_ciphertext placing
          (case when substr(code_verifier_ciphertext, 20, 1) = 'A' then 'B' else 'A' end) from 20 for 1) where id = ${id}`;
      });
      expect(flipped).toBe("server_error");
      // A well-formed verifier that is not the one the challenge was made from: the provider refuses.
      const foreign = await attempt("mia", async (id) => {
        const other = await cipher.encrypt({ plaintext: randomBytes(32).toString("base64url"), context: id });
        await db.sql`update authorization_sessions set code_verifier_ciphertext = ${other} where id = ${id}`;
      });
      expect(foreign).toBe("invalid_grant");
      const tokenRequests = google.tokenRequests();
      const missing = await attempt("ned", async (id) => {
        await db.sql`update authorization_sessions set code_verifier_ciphertext = null where id = ${id}`;
      });
      expect(missing).toBe("invalid_grant");
      expect(google.tokenRequests()).toBe(tokenRequests);
    });

    it("passes error=access_denied back to the app and stores nothing", async () => {
      for (const provider of ["google", "notion", "sandbox"] as const) {
        const { response, location } = await connect(provider, "olga", "olga", { deny: true });
        expect(response.status).toBe(303);
        expect(location?.href).toBe(`${returnTo}?error=access_denied`);
        expect(await integrationRows({ user: "olga", provider })).toHaveLength(0);
      }
      expect(audit.filter((e) => e.action === "authorization.failed" && e.userId === "olga").map((e) => e.reason)).toEqual([
        "ACCESS_DENIED",
        "ACCESS_DENIED",
        "ACCESS_DENIED",
      ]);
    });

    it("rejects a return_to outside the allow-list without creating a session", async () => {
      const before = await sessionCount();
      for (const bad of ["https://app.example.com.evil.com/settings/integrations", "//evil.com/", "javascript:alert(1)", "https://app.example.com@evil.com/settings/integrations"]) {
        const answer = await rpc("StartAuthorization", "user:pat", { provider: "google", returnTo: bad });
        expect(answer.status).toBe(400);
        expect(answer.json).toMatchObject({ code: "invalid_argument" });
        expect(String(answer.json["message"])).toMatch(/^return_to: /);
        expect(answer.headers.getSetCookie()).toEqual([]);
      }
      expect(await sessionCount()).toBe(before);
    });

    it("a code cannot be used twice, not even with a fresh state", async () => {
      const first = await connect("google", "quinn", "quinn-g");
      connectedId(first.location);
      const used = first.callbackUrl.searchParams.get("code") ?? "";
      const browser = createBrowser();
      const started = await start("user:quinn", { provider: "google", returnTo: "" }, browser);
      const forged = new URL(`${base}/oauth/callback/google`);
      forged.searchParams.set("code", used);
      forged.searchParams.set("state", started.state);
      forged.searchParams.set("iss", google.issuer);
      const tokenRequests = google.tokenRequests();
      const { location } = await arrive(browser, forged);
      expect(google.tokenRequests()).toBe(tokenRequests + 1);
      expect(location?.href).toBe(`${returnTo}?error=invalid_grant`);
      expect(await integrationRows({ user: "quinn", provider: "google" })).toHaveLength(1);
    });

    it("a slow or failing token endpoint ends in a bounded, clear error and no integration", async () => {
      const at = async (user: string) => {
        const browser = createBrowser();
        const started = await start(`user:${user}`, { provider: "google", returnTo: "" }, browser);
        await rememberVerifier(started.sessionId);
        const callbackUrl = await consent("google", started.url, { username: `${user}-g` }, browser);
        const began = Date.now();
        const arrival = await arrive(browser, callbackUrl);
        return { ...arrival, elapsedMs: Date.now() - began, sessionId: started.sessionId };
      };
      // A token endpoint that never answers: only the exchange timeout ends the callback (the
      // bound is the broker's; the one below only names a callback that waited far longer).
      google.setTokenEndpointFault("hold");
      try {
        const slow = await at("rita");
        expect(slow.elapsedMs).toBeLessThan(3 * EXCHANGE_TIMEOUT_MS);
        expect(slow.location?.href).toBe(`${returnTo}?error=temporarily_unavailable`);
        expect(await integrationRows({ user: "rita", provider: "google" })).toHaveLength(0);
        google.setTokenEndpointFault("503");
        const failing = await at("sam");
        expect(failing.location?.href).toBe(`${returnTo}?error=temporarily_unavailable`);
        expect(await integrationRows({ user: "sam", provider: "google" })).toHaveLength(0);
        expect((await db.sql`select 1 from authorization_sessions where id = ${failing.sessionId}`).length).toBe(0);
      } finally {
        google.setTokenEndpointFault("none");
      }
      const reasons = audit.filter((e) => e.action === "authorization.failed" && (e.userId === "rita" || e.userId === "sam")).map((e) => e.reason);
      expect(reasons).toEqual(["PROVIDER_TIMEOUT", "PROVIDER_UNAVAILABLE"]);
      expect(log.text().split("\n").some((line) => line.includes("authorization callback failed") && line.includes("PROVIDER_TIMEOUT"))).toBe(true);
    });

    it("the callback answers only GET, so a HEAD from a link scanner does not use up the state", async () => {
      const browser = createBrowser();
      const started = await start("user:uma", { provider: "google", returnTo: "" }, browser);
      const callbackUrl = await consent("google", started.url, { username: "uma-g" }, browser);
      const cookie = [...browser.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
      for (const method of ["HEAD", "POST"]) {
        const response = await fetch(callbackUrl, { method, headers: { cookie }, redirect: "manual" });
        expect(response.status).toBe(405);
        expect(response.headers.get("allow")).toBe("GET");
        expect(response.headers.get("cache-control")).toBe("no-store");
        await response.body?.cancel();
      }
      const { response, location } = await arrive(browser, callbackUrl);
      expect(response.status).toBe(303);
      connectedId(location);
      const unknown = await fetch(`${base}/oauth/callback/`, { redirect: "manual" });
      expect(unknown.status).toBe(404);
      expect(unknown.headers.get("referrer-policy")).toBe("no-referrer");
      observed.push(await unknown.text());
    });

    it("no token, code, state, verifier or client secret appears in any redirect, response body, log line or audit event", async () => {
      const values = [...secrets].filter((s) => s.length >= 8);
      expect(values.length).toBeGreaterThan(40);
      const haystacks = [...observed, log.text(), ...audit.map((e) => JSON.stringify(e))];
      expect(haystacks.length).toBeGreaterThan(40);
      for (const haystack of haystacks) {
        for (const secret of values) {
          if (haystack.includes(secret)) throw new Error(`secret leaked into: ${haystack.slice(0, 200)}`);
        }
      }
    });
  });
});
