/**
 * The callback under attack, on a real HTTP listener with real PostgreSQL (sessions,
 * integrations, the audit trail), the local keyring and the provider peers:
 * - a user who edits `scope=` on the consent page to add a scope the provider allows but the
 *   broker did not ask for gets nothing stored, `error=invalid_scope`, an `authorization.failed`
 *   SCOPE_WIDENED row, and the grant revoked at the provider where it can be;
 * - the flow cookie is expired only by the callback that used up its own session: bogus,
 *   replayed and foreign callbacks sent to the victim's browser leave a flow in progress alone.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { createAuthorizationService, type AuthorizationService as Flow } from "../../src/domain/authorization-service.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import type { Cipher } from "../../src/domain/ports.js";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { createProviderRegistry } from "../../src/providers/provider-registry.js";
import { createPostgresAuditLog, type PostgresAuditLog } from "../../src/storage/audit-log.js";
import type { AuditEventRow } from "../../src/storage/audit-hash.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createSessionRepository } from "../../src/storage/session-repository.js";
import { createAuthorizationServiceHandlers } from "../../src/transport/handlers/authorization-service.js";
import type { HttpRoute } from "../../src/transport/http-listener.js";
import { createOAuthCallbackRoute } from "../../src/transport/oauth-callback-route.js";
import { bindService } from "../../src/transport/service-binding.js";
import { namedCallers, startTransportFixture, type TransportFixture } from "../support/transport-fixture.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { createBrowser, type Browser } from "../support/peers/browser.js";
import { arriveAtCallback, consentAtProvider, startAuthorization } from "../support/browser-flow.js";
import type { ProviderConfig } from "../../src/config/types.js";
import type { NotionPeer } from "../support/peers/notion-peer.js";
import { startOidcPeer, type OidcPeer } from "../support/peers/oidc-peer.js";
import { microsoftFlowConfig, startFlowPeers } from "../support/peers/flow-peers.js";
import { captureLogger } from "../support/log-capture.js";

const GOOGLE_SECRET = "google-secret-hostile";
const MICROSOFT_SECRET = "microsoft-secret-hostile";
const NOTION_SECRET = "notion-secret-hostile";
const RETURN_TO = "https://app.example.com/settings/integrations";
const GOOGLE_COOKIE = "oauth_broker_flow_google";

type ProviderId = "google" | "microsoft" | "graph" | "notion";

describe("hostile callbacks", () => {
  const { logger } = captureLogger();
  let db: TestDatabase;
  let dataDir: string;
  let cipher: Cipher;
  let audit: PostgresAuditLog;
  let listener: TransportFixture;
  let base: string;
  let google: OidcPeer;
  let microsoft: OidcPeer;
  /** Microsoft-like, naming Graph permissions in token responses the way Microsoft does. */
  let graph: OidcPeer;
  let notion: NotionPeer;
  let peerConfigs: ProviderConfig[];

  /** Callers name themselves (`user:alice`); the policy set below decides what they may call. */
  const callers = namedCallers();

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-hostile-"));
    cipher = await createLocalKeyringCipher({ dataDir, logger });
    audit = createPostgresAuditLog({ sql: db.sql, logger });
    // The listener comes first (its port is in the redirect URIs); the flow is built after it.
    const late: { flow?: Flow; callbackRoute?: HttpRoute } = {};
    const lateFlow: Pick<Flow, "start" | "complete"> = {
      start: (ctx, input) => (late.flow as Flow).start(ctx, input),
      complete: (ctx, input) => (late.flow as Flow).complete(ctx, input),
    };
    listener = await startTransportFixture({
      bindings: [bindService(AuthorizationService, createAuthorizationServiceHandlers({ service: lateFlow }))],
      authentication: callers,
      routes: [(req, res, url) => (late.callbackRoute === undefined ? Promise.resolve(false) : late.callbackRoute(req, res, url))],
    });
    base = listener.httpUrl;
    const publicUrl = new URL(base);
    const redirect = (id: ProviderId) => `${base}/oauth/callback/${id}`;
    ({ google, microsoft, notion, configs: peerConfigs } = await startFlowPeers(
      { google: GOOGLE_SECRET, microsoft: MICROSOFT_SECRET, notion: NOTION_SECRET },
      redirect,
    ));
    graph = await startOidcPeer({
      flavor: "microsoft",
      graphScopeSpelling: true,
      clients: [{ client_id: "broker-client", client_secret: MICROSOFT_SECRET, redirect_uris: [redirect("graph")], token_endpoint_auth_method: "client_secret_post" }],
    });
    const configs = [...peerConfigs, microsoftFlowConfig("graph", graph, MICROSOFT_SECRET)];
    const registry = await createProviderRegistry(configs, { publicUrl, logger });
    const policy = createRpcPolicy({
      providers: configs,
      policies: [{ service: "backend", providers: ["*"], scopes: ["*"], actForUsers: true, rpcs: ["AuthorizationService/*"], strict: false }],
    });
    callers.policyHolder.replace(policy);
    const flow = createAuthorizationService({
      providers: { list: () => registry.profiles(), client: (id) => registry.get(id), redirectUri: (id) => registry.redirectUri(id) },
      policy: () => policy,
      sessions: createSessionRepository(db.sql),
      integrations: createIntegrationRepository(db.sql),
      cipher,
      audit,
      settings: () => ({ returnToAllowList: [RETURN_TO], sessionTtlSeconds: 300 }),
      publicUrl,
    });
    late.flow = flow;
    late.callbackRoute = createOAuthCallbackRoute({ service: flow, publicUrl, logger });
  });

  afterAll(async () => {
    await listener?.close();
    await Promise.all([google?.close(), microsoft?.close(), graph?.close(), notion?.close()]);
    await audit?.close();
    await cipher?.close();
    await db?.drop();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  /** StartAuthorization; a user's binding cookie lands in `browser`. */
  async function start(principal: string, body: Record<string, unknown>, browser?: Browser): Promise<URL> {
    return (await startAuthorization(base, { authorization: `Bearer ${principal}` }, { returnTo: "", ...body }, browser)).authorizationUrl;
  }

  /** The browser at the provider, up to the redirect back to the broker (not followed). */
  function consent(provider: ProviderId, url: URL, username: string, browser: Browser): Promise<URL> {
    return consentAtProvider(url, { username }, browser, provider);
  }

  /** The browser arriving at the broker's callback: status, where it is sent, what it sets. */
  async function arrive(browser: Browser, callbackUrl: URL | string, method = "GET") {
    const { response, location } = await arriveAtCallback(browser, callbackUrl, method);
    await response.body?.cancel();
    return { status: response.status, location, setCookies: response.headers.getSetCookie() };
  }

  /** The consent page's URL with a scope the broker did not ask for: the user edited it. */
  function widened(url: URL, extra: string): URL {
    const edited = new URL(url);
    edited.searchParams.set("scope", `${edited.searchParams.get("scope") ?? ""} ${extra}`.trim());
    return edited;
  }

  async function integrations(user: string, provider: ProviderId): Promise<number> {
    const [row] = await db.sql<{ count: number }[]>`
      select count(*)::int as count from integrations i join token_sets t on t.integration_id = i.id
      where i.user_id = ${user} and i.provider = ${provider}`;
    return row?.count ?? -1;
  }

  async function failures(user: string): Promise<AuditEventRow[]> {
    await audit.flush();
    return db.sql<AuditEventRow[]>`
      select sequence::text as sequence, time, action, outcome, reason, caller, caller_kind, user_id, integration_id,
             provider, request_id, peer, scopes, details, previous_hash, hash
        from audit_events where action = 'authorization.failed' and user_id = ${user} order by sequence`;
  }

  describe("no widened grants", () => {
    it("google: a scope added on the consent page is revoked at the provider, nothing is stored, the app gets error=invalid_scope", async () => {
      const browser = createBrowser();
      const url = await start("user:alice", { provider: "google", scopes: ["calendar.read"] }, browser);
      expect(url.searchParams.get("scope")?.split(" ")).not.toContain("calendar.write");
      const revocations = google.revocationRequests();
      const callbackUrl = await consent("google", widened(url, "calendar.write"), "alice-g", browser);
      const arrival = await arrive(browser, callbackUrl);
      expect(arrival.status).toBe(303);
      expect(arrival.location?.href).toBe(`${RETURN_TO}?error=invalid_scope`);
      expect(await integrations("alice", "google")).toBe(0);
      expect(google.revocationRequests()).toBe(revocations + 1);
      const [row, ...more] = await failures("alice");
      expect(more).toHaveLength(0);
      expect(row).toMatchObject({
        action: "authorization.failed",
        outcome: "denied",
        reason: "SCOPE_WIDENED",
        provider: "google",
        details: expect.objectContaining({ widened_scopes: "calendar.write", widened_count: "1", revocation: "revoked" }),
      });
      // The session was used up: the cookie has served its flow.
      expect(arrival.setCookies).toEqual([expect.stringMatching(new RegExp(`^${GOOGLE_COOKIE}=; .*Max-Age=0`))]);
    });

    it("google: the same user connects normally afterwards, with exactly the scopes asked for", async () => {
      const browser = createBrowser();
      const url = await start("user:alice", { provider: "google", scopes: ["calendar.read"] }, browser);
      const arrival = await arrive(browser, await consent("google", url, "alice-g", browser));
      expect(arrival.location?.searchParams.get("status")).toBe("connected");
      const [row] = await db.sql<{ granted_scopes: string[] }[]>`select granted_scopes from integrations where user_id = 'alice'`;
      expect([...(row?.granted_scopes ?? [])].sort()).toEqual(["calendar.read", "openid"]);
    });

    it("google: revoking a widened grant of an account already connected ends its whole grant, so that integration needs re-authorization", async () => {
      // alice's alice-g integration from the test before holds calendar.read.
      const [before] = await db.sql<{ id: string; status: string }[]>`select id, status from integrations where user_id = 'alice' and provider = 'google'`;
      expect(before?.status).toBe("active");
      const browser = createBrowser();
      const url = await start("user:alice", { provider: "google", scopes: ["calendar.read"] }, browser);
      const arrival = await arrive(browser, await consent("google", widened(url, "calendar.write"), "alice-g", browser));
      expect(arrival.location?.href).toBe(`${RETURN_TO}?error=invalid_scope`);
      const [after] = await db.sql<{ status: string; status_reason: string; granted_scopes: string[] }[]>`
        select status, status_reason, granted_scopes from integrations where id = ${before?.id ?? ""}`;
      expect(after).toMatchObject({ status: "needs_reauth", status_reason: "grant_revoked_scope_widened" });
      // Nothing of the widened grant was stored over it.
      expect([...(after?.granted_scopes ?? [])].sort()).toEqual(["calendar.read", "openid"]);
      expect((await failures("alice")).at(-1)?.details).toMatchObject({
        revocation: "revoked",
        needs_reauth_count: "1",
        needs_reauth_integrations: before?.id,
        needs_reauth_reason: "grant_revoked_scope_widened",
      });
    });

    it("microsoft: a Graph permission added on the consent page is refused; without a revocation endpoint the record says so", async () => {
      const browser = createBrowser();
      const url = await start("user:bruno", { provider: "microsoft" }, browser);
      const revocations = microsoft.revocationRequests();
      const arrival = await arrive(browser, await consent("microsoft", widened(url, "Mail.Read"), "bruno-m", browser));
      expect(arrival.location?.href).toBe(`${RETURN_TO}?error=invalid_scope`);
      expect(await integrations("bruno", "microsoft")).toBe(0);
      expect(microsoft.revocationRequests()).toBe(revocations);
      expect((await failures("bruno"))[0]).toMatchObject({
        reason: "SCOPE_WIDENED",
        details: expect.objectContaining({ widened_scopes: "Mail.Read", revocation: "not_supported" }),
      });
    });

    it("microsoft: Graph permissions granted in Microsoft's spelling match the ones asked for; an added one does not", async () => {
      const browser = createBrowser();
      const asked = await arrive(browser, await consent("graph", await start("user:clara", { provider: "graph" }, browser), "clara-m", browser));
      expect(asked.location?.searchParams.get("status")).toBe("connected");
      const [row] = await db.sql<{ granted_scopes: string[] }[]>`select granted_scopes from integrations where user_id = 'clara'`;
      expect(row?.granted_scopes).toContain("https://graph.microsoft.com/user.read");
      const other = createBrowser();
      const url = await start("user:dirk", { provider: "graph" }, other);
      const arrival = await arrive(other, await consent("graph", widened(url, "Mail.Read"), "dirk-m", other));
      expect(arrival.location?.href).toBe(`${RETURN_TO}?error=invalid_scope`);
      expect(await integrations("dirk", "graph")).toBe(0);
      expect((await failures("dirk"))[0]?.details).toMatchObject({ widened_scopes: "https://graph.microsoft.com/mail.read" });
    });

    it("notion: has no scopes, so an edited scope parameter changes nothing and the account connects", async () => {
      const browser = createBrowser();
      const url = await start("user:carla", { provider: "notion" }, browser);
      const arrival = await arrive(browser, await consent("notion", widened(url, "everything"), "carla-n", browser));
      expect(arrival.location?.searchParams.get("status")).toBe("connected");
      expect(await integrations("carla", "notion")).toBe(1);
    });
  });

  describe("the flow cookie", () => {
    const cookieCleared = (setCookies: string[]) => setCookies.some((c) => c.startsWith(`${GOOGLE_COOKIE}=;`) && /Max-Age=0/.test(c));

    it("a bogus callback a third party sends the victim's browser to leaves the victim's flow alone", async () => {
      const victim = createBrowser();
      const url = await start("user:dora", { provider: "google" }, victim);
      const cookie = victim.cookies.get(GOOGLE_COOKIE);
      expect(cookie).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const callbackUrl = await consent("google", url, "dora-g", victim);
      for (const bogus of [`${base}/oauth/callback/google?state=forged-state&code=forged-code`, `${base}/oauth/callback/google`]) {
        const attack = await arrive(victim, bogus);
        expect(attack.status).toBe(400);
        expect(attack.setCookies).toEqual([]);
      }
      for (const method of ["HEAD", "POST"]) {
        const probe = await arrive(victim, callbackUrl, method);
        expect(probe.status).toBe(405);
        expect(probe.setCookies).toEqual([]);
      }
      expect(victim.cookies.get(GOOGLE_COOKIE)).toBe(cookie);
      const own = await arrive(victim, callbackUrl);
      expect(own.location?.searchParams.get("status")).toBe("connected");
      expect(cookieCleared(own.setCookies)).toBe(true);
      expect(victim.cookies.has(GOOGLE_COOKIE)).toBe(false);
    });

    it("a replayed callback does not cancel the next flow of the same browser", async () => {
      const browser = createBrowser();
      const first = await consent("google", await start("user:emil", { provider: "google" }, browser), "emil-g", browser);
      expect((await arrive(browser, first)).location?.searchParams.get("status")).toBe("connected");
      const second = await consent("google", await start("user:emil", { provider: "google" }, browser), "emil-g", browser);
      const replay = await arrive(browser, first);
      expect(replay.status).toBe(400);
      expect(replay.setCookies).toEqual([]);
      const own = await arrive(browser, second);
      expect(own.location?.searchParams.get("status")).toBe("connected");
      expect(cookieCleared(own.setCookies)).toBe(true);
    });

    it("a foreign flow's callback arriving in the victim's browser uses up its own session, not the victim's cookie", async () => {
      const victim = createBrowser();
      const own = await consent("google", await start("user:fritz", { provider: "google" }, victim), "fritz-g", victim);
      // A flow a service started for another user: no binding, so the callback finds it by state alone.
      const foreign = await consent("google", await start("service:backend", { provider: "google", userId: "gerda" }), "gerda-g", createBrowser());
      const arrival = await arrive(victim, foreign);
      expect(arrival.location?.searchParams.get("status")).toBe("connected");
      expect(arrival.setCookies).toEqual([]);
      expect(await integrations("gerda", "google")).toBe(1);
      const mine = await arrive(victim, own);
      expect(mine.location?.searchParams.get("status")).toBe("connected");
      expect(cookieCleared(mine.setCookies)).toBe(true);
      expect(await integrations("fritz", "google")).toBe(1);
    });

    it("a flow the user denied at the provider used up its session, so its cookie is cleared", async () => {
      const browser = createBrowser();
      const url = await start("user:hanna", { provider: "google" }, browser);
      const denied = await consentAtProvider(url, { username: "hanna-g", deny: true }, browser);
      const arrival = await arrive(browser, denied);
      expect(arrival.location?.href).toBe(`${RETURN_TO}?error=access_denied`);
      expect(cookieCleared(arrival.setCookies)).toBe(true);
    });
  });
});
