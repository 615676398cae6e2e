/**
 * Managing integrations on the real broker (in-process, real PostgreSQL) against a Google-like
 * oidc-provider peer and the sandbox: the change stream (filtered, resumable across a broker
 * restart, exactly once), deletion with revocation (503 then 200, racing GetAccessToken and a
 * refresh in flight, idempotent), sync, GetStatus and the scheduled cleanup.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createLogger } from "../../src/observability/logger.js";
import {
  IntegrationEventType,
  IntegrationService,
  RevocationOutcome,
  type WatchIntegrationsResponse,
} from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { IntegrationStatus } from "../../src/gen/oauthbroker/v1/integration_pb.js";
import { CircuitState, StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startInProcessBroker, type InProcessBroker } from "../support/in-process-broker.js";
import { grpcClient, serverStream, unary, type GrpcFailure } from "../support/grpc-client.js";
import { startOidcPeer, type OidcPeer } from "../support/peers/oidc-peer.js";
import { connectAccount } from "../support/browser-flow.js";
import { freePort } from "../support/free-port.js";
import { awaitedLater, waitUntil } from "../support/wait-until.js";

const GOOGLE_SECRET = "google-client-secret-for-tests";

let db: TestDatabase;
let peer: OidcPeer;
let broker: InProcessBroker;
let httpUrl: string;
const tokens = { alice: "", bob: "", carol: "", admin: "", backend: "" };

beforeAll(async () => {
  db = await createTestDatabase();
  const port = await freePort();
  httpUrl = `http://127.0.0.1:${port}`;
  peer = await startOidcPeer({
    flavor: "google",
    clients: [
      { client_id: "broker-client", client_secret: GOOGLE_SECRET, redirect_uris: [`${httpUrl}/oauth/callback/google`], token_endpoint_auth_method: "client_secret_post" },
    ],
  });
  const yaml = [
    "sandbox:",
    "  enabled: true",
    "providers:",
    "  google:",
    "    kind: google",
    "    clientId: broker-client",
    "    clientSecret: ${GOOGLE_CLIENT_SECRET}",
    "    allowedScopes: [calendar.read]",
    "    endpoints:",
    `      issuer: ${peer.issuer}`,
    "policies:",
    "  - service: backend",
    '    providers: ["*"]',
    '    scopes: ["*"]',
    "    actForUsers: true",
    "    rpcs: [IntegrationService/*]",
    "",
  ].join("\n");
  broker = await startInProcessBroker({
    yaml,
    databaseUrl: db.url,
    env: { GOOGLE_CLIENT_SECRET: GOOGLE_SECRET },
    logger: createLogger({ level: process.env["TEST_LOG"] === "1" ? "debug" : "silent" }),
    httpPort: port,
    name: "oauth-broker-manage",
  });
  tokens.alice = await broker.token("alice", "user");
  tokens.bob = await broker.token("bob", "user");
  tokens.carol = await broker.token("carol", "user");
  tokens.admin = await broker.token("ops", "service", ["admin"]);
  tokens.backend = await broker.token("backend", "service");
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  await peer?.close();
  await db?.drop();
});

type Who = keyof typeof tokens;

function rpc<T>(method: keyof typeof IntegrationService.method, who: Who, request: object): Promise<T> {
  const client = grpcClient(broker.grpcAddress);
  return unary(client, IntegrationService.method[method] as never, request as never, {
    metadata: { authorization: `Bearer ${tokens[who]}` },
  })
    .then((answer) => (answer as unknown as { response: T }).response)
    .finally(() => client.close());
}

function connectClient(who: Who) {
  const client = createClient(IntegrationService, createConnectTransport({ baseUrl: httpUrl, httpVersion: "1.1" }));
  return { client, options: { headers: { authorization: `Bearer ${tokens[who]}` } } };
}

async function getToken(who: Who, request: object) {
  const client = grpcClient(broker.grpcAddress);
  try {
    return (await unary(client, TokenService.method.getAccessToken, request as never, { metadata: { authorization: `Bearer ${tokens[who]}` } })).response;
  } finally {
    client.close();
  }
}

/** A watch over gRPC whose messages collect in `messages`; `next(n)` waits for n more. */
function watch(who: Who, request: { cursor?: string; userId?: string; provider?: string }) {
  const client = grpcClient(broker.grpcAddress);
  const stream = serverStream(client, IntegrationService.method.watchIntegrations, request, { metadata: { authorization: `Bearer ${tokens[who]}` } });
  const messages: WatchIntegrationsResponse[] = [];
  let failure: unknown;
  const done = (async () => {
    try {
      for await (const message of stream.messages) messages.push(message);
    } catch (error) {
      failure = error;
    }
  })();
  return {
    messages,
    events: () => messages.filter((m) => m.event !== undefined).map((m) => m.event!),
    async until(predicate: () => boolean, what: string, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (failure !== undefined) throw failure as Error;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(messages.map((m) => m.event?.type ?? "position"))}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    failure: () => failure,
    async close() {
      stream.cancel();
      await done;
      client.close();
    },
  };
}

describe("WatchIntegrations", () => {
  it("streams what each caller may see and resumes after a broker restart with every change exactly once", async () => {
    const admin = watch("admin", {});
    const carolWatch = watch("carol", {});
    await admin.until(() => admin.messages.length >= 1, "the starting position");
    expect(admin.messages[0]?.event).toBeUndefined();
    expect(admin.messages[0]?.cursor).not.toBe("");

    const id = await connectAccount(httpUrl, tokens.alice, "sandbox", "watched-alice");
    await admin.until(() => admin.events().some((e) => e.integration?.id === id), "the created event");
    const created = admin.events().find((e) => e.integration?.id === id)!;
    expect(created.type).toBe(IntegrationEventType.CREATED);
    expect(created.integration?.userId).toBe("alice");
    expect(JSON.stringify(created, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).not.toMatch(/"(accessToken|refreshToken)"/);
    await admin.close();
    // Carol's own change, made after Alice's, is the signal that her stream has caught up past it.
    const carols = await connectAccount(httpUrl, tokens.carol, "sandbox", "watched-carol");
    await carolWatch.until(() => carolWatch.events().some((e) => e.integration?.id === carols), "carol's own created event");

    // Changes while nobody watches, across a restart of the broker.
    await rpc("refreshIntegration", "alice", { id });
    await broker.restart();
    await rpc("deleteIntegration", "alice", { id });

    const resumed = watch("admin", { cursor: created.cursor });
    await resumed.until(() => resumed.events().some((e) => e.type === IntegrationEventType.DELETED), "the deleted event");
    const mine = resumed.events().filter((e) => e.integration?.id === id);
    expect(mine.map((e) => e.type)).toEqual([IntegrationEventType.REFRESHED, IntegrationEventType.DELETED]);
    // Each later event's cursor resumes after it: resuming from the last one yields nothing more.
    const last = resumed.events().at(-1)!;
    await resumed.close();
    const after = watch("admin", { cursor: last.cursor });
    // A change made now is the signal that the resumed stream has caught up: nothing about the
    // deleted integration may come before it.
    const marker = await connectAccount(httpUrl, tokens.alice, "sandbox", "watched-marker");
    await after.until(() => after.events().some((e) => e.integration?.id === marker), "the marker's created event");
    expect(after.events().filter((e) => e.integration?.id === id)).toEqual([]);
    await after.close();

    // Carol saw none of Alice's changes, only her own: a user watches only their own integrations.
    expect(carolWatch.events().map((e) => e.integration?.id)).toEqual([carols]);
    await carolWatch.close();
    // The two signals leave no integration behind for the tests below, which count them.
    await rpc("deleteIntegration", "alice", { id: marker });
    await rpc("deleteIntegration", "carol", { id: carols });
  }, 60_000);

  it("follows over Connect too, and tells a user the grant needs re-authorization", async () => {
    const id = await connectAccount(httpUrl, tokens.alice, "google", "alice-google-watch");
    const { client, options } = connectClient("alice");
    const abort = new AbortController();
    const seen: IntegrationEventType[] = [];
    const stream = client.watchIntegrations({ provider: "google" }, { ...options, signal: abort.signal });
    // The stream's first message is its starting position: the signal that it is open.
    let opened: () => void = () => {};
    const positioned = new Promise<void>((resolve) => (opened = resolve));
    const reading = (async () => {
      try {
        for await (const message of stream) {
          opened();
          if (message.event?.integration?.id === id) seen.push(message.event.type);
          if (seen.includes(IntegrationEventType.NEEDS_REAUTH)) break;
        }
      } catch (error) {
        if (!abort.signal.aborted) throw error;
      }
    })();
    await Promise.race([positioned, reading]);
    await peer.revokeGrantsFor("alice-google-watch");
    const sync = await rpc<{ needsReauth: number }>("syncIntegrations", "alice", { provider: "google" });
    expect(sync.needsReauth).toBe(1);
    await Promise.race([reading, new Promise((_, reject) => setTimeout(() => reject(new Error(`no NEEDS_REAUTH event: ${seen.join(",")}`)), 10_000))]);
    abort.abort();
    expect(seen).toContain(IntegrationEventType.NEEDS_REAUTH);
  }, 60_000);

  it("refuses a cursor it did not issue and one older than the retention horizon", async () => {
    const bogus = watch("admin", { cursor: "not-a-cursor" });
    await bogus.until(() => bogus.failure() !== undefined, "the refusal");
    expect((bogus.failure() as GrpcFailure).code).toBe(Code.InvalidArgument);
    await bogus.close();

    await db.sql`insert into integration_events_horizon (id, purged_through) values (true, 1000000)
                 on conflict (id) do update set purged_through = excluded.purged_through`;
    try {
      const old = watch("admin", { cursor: Buffer.from("feed:1").toString("base64url") });
      await old.until(() => old.failure() !== undefined, "the refusal");
      expect((old.failure() as GrpcFailure).code).toBe(Code.FailedPrecondition);
      expect((old.failure() as GrpcFailure).details).toMatch(/retention/);
      await old.close();
    } finally {
      await db.sql`delete from integration_events_horizon`;
    }
  });
});

describe("DeleteIntegration", () => {
  it("revokes at the provider, erases the tokens and is idempotent", async () => {
    const id = await connectAccount(httpUrl, tokens.alice, "google", "alice-delete");
    const before = peer.revocationRequests();
    const deleted = await rpc<{ integration: { status: number }; revocation: number }>("deleteIntegration", "alice", { id });
    expect(deleted.revocation).toBe(RevocationOutcome.REVOKED);
    expect(deleted.integration.status).toBe(IntegrationStatus.DELETED);
    expect(peer.revocationRequests()).toBe(before + 1);
    expect((await db.sql`select 1 from token_sets where integration_id = ${id}`).count).toBe(0);
    expect((await db.sql`select 1 from pending_revocations where integration_id = ${id}`).count).toBe(0);

    const again = await rpc<{ revocation: number }>("deleteIntegration", "alice", { id });
    expect(again.revocation).toBe(RevocationOutcome.ALREADY_DELETED);
    expect(peer.revocationRequests()).toBe(before + 1);

    const gone = (await getToken("admin", { integrationId: id }).catch((e: unknown) => e)) as GrpcFailure;
    expect(gone.code).toBe(Code.NotFound);
    const actions = await db.sql<{ action: string; outcome: string; caller: string }[]>`
      select action, outcome, caller from audit_events where integration_id = ${id} and action like 'integration.%' order by sequence`;
    expect(actions.map((a) => ({ ...a }))).toEqual([
      { action: "integration.revoked", outcome: "success", caller: "alice" },
      { action: "integration.deleted", outcome: "success", caller: "alice" },
      { action: "integration.deleted", outcome: "success", caller: "alice" },
    ]);
  }, 30_000);

  it("keeps a revocation the provider answered with 503 and completes it when the provider recovers", async () => {
    const id = await connectAccount(httpUrl, tokens.alice, "google", "alice-503");
    peer.setRevocationEndpointFault("503");
    try {
      const deleted = await rpc<{ revocation: number }>("deleteIntegration", "alice", { id });
      expect(deleted.revocation).toBe(RevocationOutcome.PENDING);
    } finally {
      peer.setRevocationEndpointFault("none");
    }
    const [pending] = await db.sql<{ token_ciphertext: string; attempts: number; token_type_hint: string }[]>`
      select token_ciphertext, attempts, token_type_hint from pending_revocations where integration_id = ${id}`;
    expect(pending?.token_ciphertext).toMatch(/^local:v\d+:/);
    expect(pending?.token_type_hint).toBe("refresh_token");
    expect(pending?.attempts).toBe(1);
    expect((await db.sql`select 1 from token_sets where integration_id = ${id}`).count).toBe(0);

    // Not due yet: the retry job leaves it alone.
    const before = peer.revocationRequests();
    await broker.broker.jobs.revocations.runOnce();
    expect(peer.revocationRequests()).toBe(before);

    await db.sql`update pending_revocations set next_attempt_at = now() where integration_id = ${id}`;
    await broker.broker.jobs.revocations.runOnce();
    expect(peer.revocationRequests()).toBe(before + 1);
    expect((await db.sql`select 1 from pending_revocations where integration_id = ${id}`).count).toBe(0);
    const actions = await db.sql<{ action: string; caller_kind: string }[]>`
      select action, caller_kind from audit_events where integration_id = ${id} and action like 'integration.%' order by sequence`;
    expect(actions.map((a) => `${a.action}/${a.caller_kind}`)).toEqual([
      "integration.revocation_deferred/user",
      "integration.deleted/user",
      "integration.revoked/system",
    ]);
  }, 30_000);

  it("races GetAccessToken cleanly: callers get a token or NOT_FOUND, never an internal error", async () => {
    const id = await connectAccount(httpUrl, tokens.alice, "google", "alice-race");
    const calls = Array.from({ length: 40 }, (_, i) =>
      new Promise((resolve) => setTimeout(resolve, i * 2)).then(() =>
        getToken("admin", { integrationId: id, minValidFor: durationFromMs(60_000) }).then(
          () => "token",
          (error: GrpcFailure) => ((error.code as number) === Code.NotFound ? "not_found" : `code ${error.code}: ${error.details}`),
        ),
      ),
    );
    const deleted = awaitedLater(rpc<{ revocation: number }>("deleteIntegration", "alice", { id }));
    const outcomes = await Promise.all(calls);
    expect((await deleted).revocation).toBe(RevocationOutcome.REVOKED);
    expect(outcomes.filter((o) => o !== "token" && o !== "not_found")).toEqual([]);
    const after = (await getToken("admin", { integrationId: id }).catch((e: unknown) => e)) as GrpcFailure;
    expect(after.code).toBe(Code.NotFound);
  }, 30_000);

  it("waits for a refresh in flight and revokes the token it produced", async () => {
    const id = await connectAccount(httpUrl, tokens.alice, "google", "alice-inflight");
    peer.setTokenEndpointFault("slow");
    const requestsBefore = peer.tokenRequests();
    const settled: string[] = [];
    const refreshing = rpc("refreshIntegration", "alice", { id }).then(
      () => "refreshed",
      (error: GrpcFailure) => `code ${error.code}`,
    );
    void refreshing.then(() => settled.push("refresh"));
    try {
      // The refresh holds the lease while the provider is slow.
      await waitUntil(() => peer.tokenRequests() > requestsBefore, "the refresh reaches the provider");
      const deleted = await rpc<{ revocation: number }>("deleteIntegration", "alice", { id });
      settled.push("delete");
      expect(deleted.revocation).toBe(RevocationOutcome.REVOKED);
      // The delete waited for the refresh rather than revoking a token about to be replaced: the
      // refresh stored its token (a delete that went first would have failed it) and settled first.
      expect(await refreshing).toBe("refreshed");
      expect(settled).toEqual(["refresh", "delete"]);
    } finally {
      peer.setTokenEndpointFault("none");
    }
    expect((await db.sql`select 1 from token_sets where integration_id = ${id}`).count).toBe(0);
  }, 30_000);

  it("answers another user's id as missing, over both listeners, and changes nothing", async () => {
    const id = await connectAccount(httpUrl, tokens.alice, "sandbox", "alice-kept");
    const grpcFailure = (await rpc("deleteIntegration", "bob", { id }).catch((e: unknown) => e)) as GrpcFailure;
    expect(grpcFailure.code).toBe(Code.NotFound);
    const { client, options } = connectClient("bob");
    const connectFailure = await client.deleteIntegration({ id }, options).catch((e: unknown) => ConnectError.from(e));
    expect((connectFailure as ConnectError).code).toBe(Code.NotFound);
    const kept = await rpc<{ integration: { status: number } }>("getIntegration", "alice", { id });
    expect(kept.integration.status).toBe(IntegrationStatus.ACTIVE);
  }, 30_000);
});

describe("SyncIntegrations", () => {
  it("checks a user's grants, pages an admin's sync of everyone, and refuses a service without user_id", async () => {
    await connectAccount(httpUrl, tokens.bob, "google", "bob-sync-1");
    await connectAccount(httpUrl, tokens.bob, "sandbox", "bob-sync-2");
    const mine = await rpc<{ checked: number; updated: number; needsReauth: number; failed: number; nextPageToken: string }>("syncIntegrations", "bob", {});
    expect(mine).toMatchObject({ checked: 2, needsReauth: 0, failed: 0, nextPageToken: "" });

    let pages = 0;
    let checked = 0;
    let pageToken = "";
    do {
      const page = await rpc<{ checked: number; skipped: number; nextPageToken: string }>("syncIntegrations", "admin", { pageSize: 1, pageToken });
      checked += page.checked + page.skipped;
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken !== "" && pages < 50);
    const [active] = await db.sql<{ n: number }[]>`select count(*)::int as n from integrations where status = 'active'`;
    expect(checked).toBe(active?.n);
    expect(pages).toBeGreaterThanOrEqual(active?.n ?? 0);

    const refused = (await rpc("syncIntegrations", "backend", {}).catch((e: unknown) => e)) as GrpcFailure;
    expect(refused.code).toBe(Code.InvalidArgument);
    const tampered = (await rpc("syncIntegrations", "admin", { pageSize: 1, pageToken: "garbage" }).catch((e: unknown) => e)) as GrpcFailure;
    expect(tampered.code).toBe(Code.InvalidArgument);
    expect(tampered.fieldViolations).toMatchObject([{ field: "page_token", description: "is not a page token from a previous SyncIntegrations response" }]);
    // A provider that is not configured is named back with the ones that are, not answered with zeros.
    const unknown = (await rpc("syncIntegrations", "bob", { provider: "notion" }).catch((e: unknown) => e)) as GrpcFailure;
    expect(unknown.code).toBe(Code.InvalidArgument);
    expect(unknown.fieldViolations).toMatchObject([{ field: "provider", description: '"notion" is not a configured provider; configured: google, sandbox' }]);
    const [audited] = await db.sql<{ n: number }[]>`select count(*)::int as n from audit_events where action = 'integrations.synced' and caller = 'bob'`;
    expect(audited?.n).toBe(1);
    // Sync used the tokens itself: nobody was handed one, and nothing was "used".
    const [issued] = await db.sql<{ n: number }[]>`select count(*)::int as n from audit_events where action = 'token.issued' and user_id = 'bob'`;
    expect(issued?.n).toBe(0);
    const [used] = await db.sql<{ n: number }[]>`select count(*)::int as n from integrations where user_id = 'bob' and last_used_at is not null`;
    expect(used?.n).toBe(0);
  }, 60_000);
});

describe("GetStatus", () => {
  it("reports per provider counts, recent refreshes, the next proactive refresh and the circuit", async () => {
    const id = await connectAccount(httpUrl, tokens.alice, "google", "alice-status");
    await rpc("refreshIntegration", "alice", { id });
    const client = grpcClient(broker.grpcAddress);
    try {
      const { response } = await unary(client, StatusService.method.getStatus, {}, { metadata: { authorization: `Bearer ${tokens.admin}` } });
      const google = response.providers.find((p) => p.provider === "google");
      expect(google).toBeDefined();
      const active = google?.integrations.find((c) => c.status === IntegrationStatus.ACTIVE);
      expect(Number(active?.count)).toBeGreaterThanOrEqual(1);
      expect(Number(google?.refreshSuccessesLastHour)).toBeGreaterThanOrEqual(1);
      expect(google?.circuitState).toBe(CircuitState.CLOSED);
      expect(google?.nextProactiveRefreshTime).toBeDefined();
    } finally {
      client.close();
    }
  }, 30_000);
});

describe("cleanup", () => {
  it("purges expired sessions, old tombstones and old change events, and erases long-dead refresh tokens", async () => {
    const dead = await connectAccount(httpUrl, tokens.bob, "sandbox", "bob-dead");
    const tomb = await connectAccount(httpUrl, tokens.bob, "sandbox", "bob-tomb");
    await rpc("deleteIntegration", "bob", { id: tomb });
    await db.sql`update integrations set deleted_at = now() - interval '31 days' where id = ${tomb}`;
    await db.sql`update integrations set status = 'needs_reauth', updated_at = now() - interval '91 days' where id = ${dead}`;
    await db.sql`update integration_events set time = now() - interval '8 days' where integration_id = ${tomb}`;
    await db.sql`insert into authorization_sessions (id, state_hash, user_id, provider, expires_at)
                 values (gen_random_uuid(), 'expired-state-hash', 'bob', 'sandbox', now() - interval '1 minute')`;

    await broker.broker.jobs.cleanup.runOnce();

    expect((await db.sql`select 1 from integrations where id = ${tomb}`).count).toBe(0);
    expect((await db.sql`select 1 from integration_events where integration_id = ${tomb}`).count).toBe(0);
    expect((await db.sql`select 1 from authorization_sessions where state_hash = 'expired-state-hash'`).count).toBe(0);
    const [erased] = await db.sql<{ refresh: string | null }[]>`select refresh_token_ciphertext as refresh from token_sets where integration_id = ${dead}`;
    expect(erased?.refresh).toBeNull();
    const [horizon] = await db.sql<{ through: string }[]>`select purged_through::text as through from integration_events_horizon`;
    expect(Number(horizon?.through)).toBeGreaterThan(0);
  }, 30_000);
});
