/**
 * A refresh whose answer never came back (the provider processed it, the broker timed out) leaves
 * the lease's "sent" mark behind: nobody knows whether the provider rotated the refresh token.
 * The next refresh therefore tries the stored refresh token once, and a rotating provider that
 * revokes on replay makes that ROTATED_TOKEN_LOST, not a second blind replay.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { BrokerError, isBrokerError } from "../../src/domain/errors.js";
import { systemClock, type Cipher, type ProviderClient } from "../../src/domain/ports.js";
import { createTokenService, type TokenService } from "../../src/domain/tokens/token-service.js";
import type { RequestContext } from "../../src/domain/types.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectAtPeer } from "../support/peer-connect.js";
import type { OidcPeer } from "../support/peers/oidc-peer.js";
import { captureLogger } from "../support/log-capture.js";
import { startMicrosoftPeer } from "../support/peers/microsoft-peer.js";

const REDIRECT_URI = "http://127.0.0.1:18089/oauth/callback/microsoft";
const ctx: RequestContext = { principal: { kind: "admin", subject: "test", issuer: "test" }, requestId: "r", peer: "127.0.0.1:1" };

/**
 * The refresh budget, after which a call whose answer the peer withholds gives up: long enough for
 * the peer to have processed the refresh even on a loaded machine (every lost answer below costs
 * one budget of waiting, so it is not longer still).
 */
const REFRESH_BUDGET_MS = 2_000;

describe("a refresh whose answer was lost", () => {
  const { logger, log } = captureLogger();
  let db: TestDatabase;
  let dataDir: string;
  let peer: OidcPeer;
  let client: ProviderClient;
  let cipher: Cipher;
  let tokens: TokenService;
  const others: TokenService[] = [];

  /** Another token service on the same database, whose provider is `provider`. */
  function tokenServiceWith(provider: ProviderClient, replicaId: string, defaultDeadlineMs = REFRESH_BUDGET_MS): TokenService {
    const service = createTokenService({
      store: { integrations: createIntegrationRepository(db.sql), tokenSets: createTokenSetRepository(db.sql) },
      cipher,
      providers: { get: (id) => (id === "microsoft" ? provider : undefined) },
      clock: systemClock,
      logger,
      replicaId,
      settings: { cacheMaxEntries: 100, leaseSeconds: 5, defaultDeadlineMs, breakerFailureThreshold: 100 },
    });
    others.push(service);
    return service;
  }
  const connect = (username: string) => connectAtPeer({ peer, client, cipher, sql: db.sql, username, provider: "microsoft", redirectUri: REDIRECT_URI });
  const expire = (id: string) => db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = ${id}`;
  const sentMarkOf = async (id: string) =>
    (await db.sql<{ refresh_sent_by: string | null; version: number }[]>`select refresh_sent_by, version::int as version from token_sets where integration_id = ${id}`)[0];
  const statusOf = async (id: string) =>
    (await db.sql<{ status: string; status_reason: string }[]>`select status, status_reason from integrations where id = ${id}`)[0];
  /** Leaves `integrationId` with a "sent" mark of `service` and no recorded answer (the peer processed it). */
  async function loseAnswer(service: TokenService, integrationId: string): Promise<void> {
    await expire(integrationId);
    peer.setWithholdAnswers(true);
    try {
      await service.tokenFor(ctx, await service.resolve({ integrationId }), 60_000, []).catch((e: unknown) => e);
    } finally {
      peer.setWithholdAnswers(false);
    }
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-lost-answer-"));
    cipher = await createLocalKeyringCipher({ dataDir, logger });
    ({ peer, client } = await startMicrosoftPeer({ secret: "ms~secret.value_9", redirectUri: REDIRECT_URI, logger }));
    tokens = createTokenService({
      store: { integrations: createIntegrationRepository(db.sql), tokenSets: createTokenSetRepository(db.sql) },
      cipher,
      providers: { get: (id) => (id === "microsoft" ? client : undefined) },
      clock: systemClock,
      logger,
      replicaId: "replica-a",
      settings: { cacheMaxEntries: 100, leaseSeconds: 5, defaultDeadlineMs: REFRESH_BUDGET_MS },
    });
  });

  afterAll(async () => {
    await tokens?.close();
    for (const service of others) await service.close();
    await peer?.close();
    await db?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("keeps the sent mark after a timeout and tries the stored refresh token once more only", async () => {
    const { integrationId } = await connectAtPeer({ peer, client, cipher, sql: db.sql, username: "mallory", provider: "microsoft", redirectUri: REDIRECT_URI });
    await db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = ${integrationId}`;
    const integration = await tokens.resolve({ integrationId });
    const before = peer.tokenRequests();

    peer.setWithholdAnswers(true);
    const lost = await tokens.tokenFor(ctx, integration, 60_000, []).catch((e: unknown) => e);
    peer.setWithholdAnswers(false);
    // The refresh budget ran out while the provider held its answer.
    expect(isBrokerError(lost) && [lost.code, lost.reason]).toEqual(["deadline_exceeded", "CANCELLED"]);
    expect(peer.tokenRequests() - before).toBe(1);
    const [row] = await db.sql<{ lease_owner: string | null; refresh_sent_by: string | null; refresh_sent_version: number | null }[]>`
      select lease_owner, refresh_sent_by, refresh_sent_version::int as refresh_sent_version from token_sets where integration_id = ${integrationId}`;
    expect(row).toEqual({ lease_owner: null, refresh_sent_by: "replica-a", refresh_sent_version: 1 });

    const refused = await tokens.tokenFor(ctx, integration, 60_000, []).catch((e: unknown) => e);
    expect(isBrokerError(refused, "integration_needs_reauth") && refused.reason).toBe("ROTATED_TOKEN_LOST");
    expect(peer.tokenRequests() - before).toBe(2);
    const [status] = await db.sql<{ status: string; status_reason: string }[]>`select status, status_reason from integrations where id = ${integrationId}`;
    expect(status).toEqual({ status: "needs_reauth", status_reason: "rotated_token_lost" });
    expect(log.text().split("\n").some((line) => line.includes("ALERT") && line.includes("replica-a"))).toBe(true);
  });

  it("keeps an inherited sent mark when the provider answers the one try with a 5xx", async () => {
    const { integrationId } = await connect("trent");
    await loseAnswer(tokens, integrationId);
    expect(await sentMarkOf(integrationId)).toEqual({ refresh_sent_by: "replica-a", version: 1 });
    const before = peer.tokenRequests();
    peer.setTokenEndpointFault("503");
    const failed = await tokens.tokenFor(ctx, await tokens.resolve({ integrationId }), 60_000, []).catch((e: unknown) => e);
    peer.setTokenEndpointFault("none");
    expect(isBrokerError(failed, "provider_unavailable")).toBe(true);
    // The one try only, and the 503 says nothing about the earlier request: the mark stays.
    expect(peer.tokenRequests() - before).toBe(1);
    expect(await sentMarkOf(integrationId)).toMatchObject({ version: 1, refresh_sent_by: expect.any(String) });
    const refused = await tokens.tokenFor(ctx, await tokens.resolve({ integrationId }), 60_000, []).catch((e: unknown) => e);
    expect(isBrokerError(refused, "integration_needs_reauth") && refused.reason).toBe("ROTATED_TOKEN_LOST");
  });

  it("never resends a refresh whose outcome is unknown within one refresh, but retries one never sent", async () => {
    let calls = 0;
    let next: BrokerError | undefined;
    const flaky: ProviderClient = {
      ...client,
      refresh: async (refreshToken, options) => {
        calls += 1;
        const failure = next;
        next = undefined;
        if (failure) throw failure;
        return client.refresh(refreshToken, options);
      },
    };
    const service = tokenServiceWith(flaky, "replica-flaky", 5_000);

    // Connection refused: nothing left this host, so a retry within the same refresh is safe.
    const refusedConnection = await connect("ursula");
    await expire(refusedConnection.integrationId);
    next = new BrokerError("provider_unavailable", "cannot be reached", { reason: "PROVIDER_UNREACHABLE", cause: new Error("wrapped", { cause: new Error("ECONNREFUSED") }) });
    const issued = await service.tokenFor(ctx, await service.resolve({ integrationId: refusedConnection.integrationId }), 60_000, []);
    expect(calls).toBe(2);
    expect(issued.tokens.accessToken).not.toBe("");
    expect(await sentMarkOf(refusedConnection.integrationId)).toEqual({ refresh_sent_by: null, version: 2 });

    // A timeout: the provider may have processed (and rotated) it; the refresh ends there.
    const timeout = await connect("walter");
    await expire(timeout.integrationId);
    next = new BrokerError("provider_unavailable", "timed out", { reason: "PROVIDER_TIMEOUT" });
    const timedOut = await service.tokenFor(ctx, await service.resolve({ integrationId: timeout.integrationId }), 60_000, []).catch((e: unknown) => e);
    expect(isBrokerError(timedOut) && timedOut.reason).toBe("PROVIDER_TIMEOUT");
    expect(calls).toBe(3);
    expect(await sentMarkOf(timeout.integrationId)).toEqual({ refresh_sent_by: "replica-flaky", version: 1 });
  });

  it("calls a refusal by a provider that never rotates a revoked grant, not a lost rotated token", async () => {
    const { integrationId } = await connect("victor");
    const steady = tokenServiceWith({ ...client, rotatesRefreshTokens: false }, "replica-steady");
    await loseAnswer(steady, integrationId);
    const refused = await steady.tokenFor(ctx, await steady.resolve({ integrationId }), 60_000, []).catch((e: unknown) => e);
    expect(isBrokerError(refused, "integration_needs_reauth") && refused.reason).not.toBe("ROTATED_TOKEN_LOST");
    expect(await statusOf(integrationId)).toEqual({ status: "needs_reauth", status_reason: "invalid_grant" });
  });
});
