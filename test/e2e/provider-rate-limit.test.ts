/**
 * The broker obeys a provider that rate-limits it. A broker process refreshes three expired
 * integrations at a peer that counts token requests and answers 429: with `Retry-After`, not one
 * token request leaves the broker until that time has passed, however many callers ask meanwhile,
 * and each of them is answered at once with RESOURCE_EXHAUSTED / PROVIDER_RATE_LIMITED and the
 * remaining pause as RetryInfo; afterwards traffic resumes with one refresh per integration.
 * Without `Retry-After`, the pause backs off exponentially (1 s, then 2 s).
 */
import { status as GrpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Cipher, ProviderClient } from "../../src/domain/ports.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { TOKEN_CHANNEL } from "../../src/storage/token-notifications.js";
import type { BrokerProcess } from "../support/broker-process.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { connectAtPeer } from "../support/peer-connect.js";
import type { OidcPeer } from "../support/peers/oidc-peer.js";
import { microsoftPeerProviderYaml, startMicrosoftPeer } from "../support/peers/microsoft-peer.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import { captureLogger } from "../support/log-capture.js";

const SECRET = "ms~secret.value_8";
const REDIRECT_URI = "http://127.0.0.1:18088/oauth/callback/microsoft";
const RETRY_AFTER_SECONDS = 2;

describe("a provider answering 429", () => {
  let db: TestDatabase;
  let data: BrokerDataDir;
  let peer: OidcPeer;
  let client: ProviderClient;
  let cipher: Cipher;
  let broker: BrokerProcess;
  let adminToken: string;
  let grpc: ReturnType<typeof grpcClient>;
  const ids: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    const { logger } = captureLogger();
    data = await createBrokerDataDir("oauth-broker-rate-limit", logger);
    ({ cipher, adminToken } = data);
    ({ peer, client } = await startMicrosoftPeer({ secret: SECRET, redirectUri: REDIRECT_URI, logger }));
    await data.writeConfig(["providers:", ...microsoftPeerProviderYaml("microsoft", peer), "tokens:", "  proactiveRefreshIntervalSeconds: 3600"]);
    broker = await data.startBroker({ DATABASE_URL: db.url, MS_SECRET: SECRET });
    grpc = grpcClient(broker.grpcAddress);
    for (const username of ["judy", "kim", "leo"]) {
      ids.push((await connectAtPeer({ peer, client, cipher, sql: db.sql, username, provider: "microsoft", redirectUri: REDIRECT_URI })).integrationId);
    }
  }, 90_000);

  afterAll(async () => {
    grpc?.close();
    await broker?.stop("SIGTERM");
    await peer?.close();
    await db?.drop();
    await data?.remove();
  });

  const getToken = (integrationId: string) =>
    unary(grpc, TokenService.method.getAccessToken, { integrationId }, { metadata: { authorization: `Bearer ${adminToken}` }, deadlineMs: 10_000 }).then(
      ({ response }) => ({ ok: true as const, accessToken: response.accessToken }),
      (error: unknown) => ({ ok: false as const, error: error as GrpcFailure }),
    );

  const expireAll = () => db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = any(${ids})`;

  /**
   * Calls for every integration, round after round, until one call is answered with a token.
   * Returns every refusal before it, and when it was served.
   */
  async function callUntilServed(): Promise<{ refusals: GrpcFailure[]; servedAt: number }> {
    const refusals: GrpcFailure[] = [];
    for (;;) {
      for (const id of ids) {
        const answer = await getToken(id);
        if (answer.ok) return { refusals, servedAt: Date.now() };
        refusals.push(answer.error);
      }
    }
  }

  it("sends nothing until Retry-After has passed, answers every caller at once with the remaining pause, then resumes", async () => {
    await expireAll();
    const before = peer.tokenRequests();
    peer.setRetryAfter(RETRY_AFTER_SECONDS);
    peer.setTokenEndpointFault("429");
    // Taken before the call that draws the 429: the pause starts no earlier, so a broker that
    // waits it out serves no sooner than Retry-After after this, however slow the machine.
    const askedAt = Date.now();
    const first = await getToken(ids[0] ?? "");
    expect(first.ok).toBe(false);
    if (first.ok) return;
    expect(first.error.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(first.error.errorInfo?.reason).toBe("PROVIDER_RATE_LIMITED");
    expect(first.error.retryDelayMs).toBeGreaterThan(RETRY_AFTER_SECONDS * 1000 - 500);
    expect(first.error.retryDelayMs).toBeLessThanOrEqual(RETRY_AFTER_SECONDS * 1000);
    expect(peer.tokenRequests() - before).toBe(1);
    // The provider would answer now; the broker must still wait out the pause it was given.
    peer.setTokenEndpointFault("none");

    const { refusals, servedAt } = await callUntilServed();
    expect(refusals.length).toBeGreaterThan(0);
    for (const refusal of refusals) {
      expect(refusal.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
      expect(refusal.errorInfo?.reason).toBe("PROVIDER_RATE_LIMITED");
      expect(refusal.errorInfo?.metadata["paused"]).toBe("true");
      expect(refusal.retryDelayMs).toBeGreaterThan(0);
      expect(refusal.retryDelayMs).toBeLessThanOrEqual(RETRY_AFTER_SECONDS * 1000);
    }
    expect(servedAt - askedAt).toBeGreaterThanOrEqual(RETRY_AFTER_SECONDS * 1000);
    // The 429 and the refresh that resumed traffic: nothing was sent inside the pause.
    expect(peer.tokenRequests() - before).toBe(2);
    for (const id of ids) expect((await getToken(id)).ok).toBe(true);
    expect(peer.tokenRequests() - before).toBe(1 + ids.length);
  }, 60_000);

  it("without Retry-After, backs off exponentially: 1 s, then 2 s", async () => {
    await expireAll();
    // As if time had passed: the broker drops its cached copies on these change notifications.
    for (const id of ids) await db.sql`select pg_notify(${TOKEN_CHANNEL}, ${`${id}:${Number.MAX_SAFE_INTEGER}`})`;
    const before = peer.tokenRequests();
    peer.setRetryAfter(undefined);
    peer.setTokenEndpointFault("429");
    const delays: number[] = [];
    const sentAt: number[] = [];
    let pausedRefusals = 0;
    while (delays.length < 2) {
      const sent = peer.tokenRequests();
      const { refusals } = await callUntilServedOrSent(sent);
      sentAt.push(Date.now());
      pausedRefusals += refusals.filter((refusal) => refusal.errorInfo?.metadata["paused"] === "true").length;
      const fresh = refusals.find((refusal) => refusal.errorInfo?.metadata["paused"] !== "true");
      if (fresh?.retryDelayMs !== undefined) delays.push(fresh.retryDelayMs);
    }
    peer.setTokenEndpointFault("none");
    expect(delays[0]).toBeGreaterThan(500);
    expect(delays[0]).toBeLessThanOrEqual(1_000);
    expect(delays[1]).toBeGreaterThan(1_500);
    expect(delays[1]).toBeLessThanOrEqual(2_000);
    // The second request waited out the first pause; callers meanwhile were refused at once.
    expect((sentAt[1] ?? 0) - (sentAt[0] ?? 0)).toBeGreaterThanOrEqual(900);
    expect(pausedRefusals).toBeGreaterThan(0);
    expect(peer.tokenRequests() - before).toBe(2);
  }, 60_000);

  /** Calls until one call made the broker send a token request (the provider counted it). */
  async function callUntilServedOrSent(sentBefore: number): Promise<{ refusals: GrpcFailure[] }> {
    const refusals: GrpcFailure[] = [];
    for (;;) {
      for (const id of ids) {
        const answer = await getToken(id);
        if (!answer.ok) refusals.push(answer.error);
        if (peer.tokenRequests() > sentBefore) return { refusals };
      }
    }
  }
});
