/**
 * Three broker processes on one PostgreSQL and a Microsoft-like peer that rotates refresh tokens.
 * The peer holds the token endpoint, so the replica that took the refresh lease is caught inside
 * its provider call; that process is SIGKILLed. The lease it held (renewed by its heartbeat while
 * it lived) must lapse at the expiry its last renewal set and no earlier, another replica must then
 * refresh (once: the lease says a request was sent, so the stored token is tried once), callers waiting on the surviving replicas
 * must get that valid token, and the grant must stay alive: the killed call never reached the
 * provider, so the stored refresh token is still the good one, and the survivor stores its
 * rotation.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Cipher, ProviderClient } from "../../src/domain/ports.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { TOKEN_CHANNEL } from "../../src/storage/token-notifications.js";
import type { BrokerProcess } from "../support/broker-process.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { scrapeMetrics, unlabelledValue } from "../support/prometheus-text.js";
import { grpcClient, unary } from "../support/grpc-client.js";
import { connectAtPeer, waitUntil } from "../support/peer-connect.js";
import { type OidcPeer } from "../support/peers/oidc-peer.js";
import { captureLogger } from "../support/log-capture.js";
import { microsoftPeerProviderYaml, startMicrosoftPeer } from "../support/peers/microsoft-peer.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";

const SECRET = "ms~secret.value_5";
const REDIRECT_URI = "http://127.0.0.1:18084/oauth/callback/microsoft";
const LEASE_SECONDS = 4;

describe("a replica killed while it holds the refresh lease", () => {
  let db: TestDatabase;
  let data: BrokerDataDir;
  let peer: OidcPeer;
  let client: ProviderClient;
  let cipher: Cipher;
  let brokers: BrokerProcess[] = [];
  let adminToken: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    const { logger } = captureLogger();
    // Created before the brokers start, so all three share one keyring and one signing key.
    data = await createBrokerDataDir("oauth-broker-lease-crash", logger);
    ({ cipher, adminToken } = data);
    ({ peer, client } = await startMicrosoftPeer({ secret: SECRET, redirectUri: REDIRECT_URI, logger }));
    await data.writeConfig([
      "providers:",
      ...microsoftPeerProviderYaml("microsoft", peer, ["timeoutMs: 10000"]),
      "tokens:",
      `  leaseSeconds: ${LEASE_SECONDS}`,
      // The proactive refresher stays out of the way: only callers refresh here.
      "  proactiveRefreshIntervalSeconds: 3600",
    ]);
    brokers = await Promise.all(["a", "b", "c"].map(() => data.startBroker({ DATABASE_URL: db.url, MS_SECRET: SECRET })));
  }, 90_000);

  // A test that fails while the token endpoint holds would leave the survivors' calls held; their
  // SIGTERM drain would then wait for them instead of the run ending with the failure.
  afterEach(() => {
    peer?.setTokenEndpointFault("none");
    peer?.releaseHeldRequests();
  });

  afterAll(async () => {
    for (const broker of brokers) await broker.stop("SIGTERM").catch(() => undefined);
    await peer?.close();
    await db?.drop();
    await data?.remove();
  });

  function getToken(broker: BrokerProcess, integrationId: string) {
    const grpc = grpcClient(broker.grpcAddress);
    return unary(grpc, TokenService.method.getAccessToken, { integrationId }, { metadata: { authorization: `Bearer ${adminToken}` }, deadlineMs: 20_000 }).finally(
      () => grpc.close(),
    );
  }

  const leaseWaits = async (broker: BrokerProcess) => unlabelledValue(await scrapeMetrics(broker.httpUrl), "oauth_broker_refresh_lease_waits_total");

  const leaseOf = async (id: string) =>
    (await db.sql<{ lease_owner: string | null; lease_expires_at: Date | null; version: number }[]>`
      select lease_owner, lease_expires_at, version::int as version from token_sets where integration_id = ${id}`)[0];

  it("frees the lease at its expiry, lets one survivor refresh once, and serves its token on every surviving replica", async () => {
    const { integrationId } = await connectAtPeer({ peer, client, cipher, sql: db.sql, username: "grace", provider: "microsoft", redirectUri: REDIRECT_URI });
    await db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = ${integrationId}`;
    const [first, ...survivors] = brokers as [BrokerProcess, BrokerProcess, BrokerProcess];
    const requestsBefore = peer.tokenRequests();

    peer.setTokenEndpointFault("hold");
    const doomed = getToken(first, integrationId).then(
      () => "answered",
      () => "failed",
    );
    await waitUntil(() => peer.heldRequests() === 1, "the first replica is inside its provider call");
    const held = await leaseOf(integrationId);
    expect(held?.lease_owner?.split("/")[1]).toBe(String(first.child.pid));

    const waitsBefore = await Promise.all(survivors.map(leaseWaits));
    const waiting = survivors.flatMap((broker) => [getToken(broker, integrationId), getToken(broker, integrationId)]);
    await waitUntil(
      async () => (await Promise.all(survivors.map(leaseWaits))).every((n, i) => n > (waitsBefore[i] ?? 0)),
      "callers on both surviving replicas wait for the lease",
    );

    await first.stop("SIGKILL");
    // The expiry the holder's last heartbeat set: read after the kill, so no renewal follows it.
    const leaseExpiresAt = (await leaseOf(integrationId))?.lease_expires_at?.getTime() ?? 0;
    peer.setTokenEndpointFault("none");
    // The killed replica's request dies with its connection; the provider never processes it.
    await waitUntil(() => peer.heldRequests() === 0, "the held request is gone");
    expect(await doomed).toBe("failed");

    const answers = await Promise.all(waiting);
    const answeredAt = Date.now();
    const accessTokens = new Set(answers.map(({ response }) => response.accessToken));
    expect(accessTokens.size).toBe(1);
    const [accessToken = ""] = accessTokens;
    expect((await fetch(`${peer.apiBase}/v1.0/me`, { headers: { authorization: `Bearer ${accessToken}` } })).status).toBe(200);
    for (const { response } of answers) expect(Number(response.expireTime?.seconds) * 1000).toBeGreaterThan(Date.now() + 3_000_000);

    // The dead holder's lease was respected until it expired; its "sent" mark then makes the
    // taker wait up to one lease and a third for a holder that might only be cut off (README, "A
    // refresher dies mid-refresh"), and one more lease covers the waiters' polling.
    expect(answeredAt).toBeGreaterThanOrEqual(leaseExpiresAt - 100);
    expect(answeredAt - leaseExpiresAt).toBeLessThan((LEASE_SECONDS * 4) / 3 * 1000 + LEASE_SECONDS * 1000);
    // The held call (never processed) and one refresh by a survivor.
    expect(peer.tokenRequests() - requestsBefore).toBe(2);
    const after = await leaseOf(integrationId);
    expect(after).toMatchObject({ lease_owner: null, version: 2 });
    const events = await db.sql<{ action: string; caller: string }[]>`
      select action, caller from audit_events where integration_id = ${integrationId} and action like 'token.refresh%'`;
    expect(events).toEqual([{ action: "token.refreshed", caller: "ops" }]);

    // The survivor stored the rotated token: the next refresh works (a replayed one would revoke the grant).
    await db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = ${integrationId}`;
    // As if time had passed: the replicas drop their cached copy on this change notification.
    await db.sql`select pg_notify(${TOKEN_CHANNEL}, ${`${integrationId}:${Number.MAX_SAFE_INTEGER}`})`;
    let next = "";
    await waitUntil(async () => {
      next = (await getToken(survivors[1], integrationId)).response.accessToken;
      return next !== accessToken;
    }, "a replica refreshes the expired token");
    expect((await fetch(`${peer.apiBase}/v1.0/me`, { headers: { authorization: `Bearer ${next}` } })).status).toBe(200);
    expect(peer.tokenRequests() - requestsBefore).toBe(3);
    const [status] = await db.sql<{ status: string }[]>`select status from integrations where id = ${integrationId}`;
    expect(status?.status).toBe("active");
  }, 60_000);
});
