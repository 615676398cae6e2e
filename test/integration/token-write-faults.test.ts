/**
 * The database going away after the provider answered a refresh, against real PostgreSQL and a
 * Microsoft-like peer that rotates refresh tokens (replaying a rotated one revokes the whole
 * grant, so a lost rotated token shows as a dead grant). The token service's pool goes through a
 * TCP proxy the test cuts: once in the middle of the token write, once for longer than the
 * caller's write attempts. The rotated token must be stored from memory in both cases, and the
 * next refresh must start from it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { isBrokerError, type BrokerError } from "../../src/domain/errors.js";
import { systemClock, type Cipher, type ProviderClient } from "../../src/domain/ports.js";
import { createTokenService, type TokenService, type TokenServiceDeps } from "../../src/domain/tokens/token-service.js";
import type { RequestContext } from "../../src/domain/types.js";
import { createPostgresAuditLog, type PostgresAuditLog } from "../../src/storage/audit-log.js";
import { createDatabase, type Database } from "../../src/storage/database.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { GRPC_CODE_BY_ERROR } from "../../src/transport/error-mapping.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectAtPeer, waitUntil } from "../support/peer-connect.js";
import { type OidcPeer } from "../support/peers/oidc-peer.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { captureLogger } from "../support/log-capture.js";
import { startMicrosoftPeer } from "../support/peers/microsoft-peer.js";
import { awaitedLater } from "../support/wait-until.js";

const REDIRECT_URI = "http://127.0.0.1:18081/oauth/callback/microsoft";
const SECRET = "ms~secret.value_2";
const ctx: RequestContext = {
  principal: { kind: "service", subject: "mailer", issuer: "test" },
  requestId: "req-write-faults",
  peer: "127.0.0.1:2",
};

describe("token writes when the database goes away after the provider answered", () => {
  const { logger, log } = captureLogger();
  let db: TestDatabase;
  let dataDir: string;
  let peer: OidcPeer;
  let client: ProviderClient;
  let cipher: Cipher;
  let proxy: TcpProxy;
  let audit: PostgresAuditLog;
  const pools: Database[] = [];
  const services: TokenService[] = [];
  /** Waits as the broker does by default: five attempts, 200 ms growing to 2 s. */
  let patient: TokenService;
  /** Gives up on the caller's attempts quickly, so the background path is reached in milliseconds. */
  let hasty: TokenService;
  let cutAfterNextRefresh = false;

  async function tokenService(replicaId: string, writeRetry?: NonNullable<TokenServiceDeps["settings"]["writeRetry"]>, leaseSeconds = 5): Promise<TokenService> {
    const database = createDatabase({ url: proxy.via(db.url), poolSize: 4, logger, connectTimeoutSeconds: 2 });
    pools.push(database);
    const service = createTokenService({
      store: { integrations: createIntegrationRepository(database.sql), tokenSets: createTokenSetRepository(database.sql) },
      cipher,
      providers: {
        get: (id) =>
          id === "microsoft"
            ? {
                ...client,
                // The provider has answered (and rotated the refresh token) when the database goes.
                async refresh(refreshToken, options) {
                  const grant = await client.refresh(refreshToken, options);
                  if (cutAfterNextRefresh) {
                    cutAfterNextRefresh = false;
                    proxy.cut();
                  }
                  return grant;
                },
              }
            : undefined,
      },
      clock: systemClock,
      logger,
      replicaId,
      audit,
      settings: { cacheMaxEntries: 100, leaseSeconds, breakerFailureThreshold: 100, writeRetry },
    });
    services.push(service);
    return service;
  }

  const connect = (username: string) =>
    connectAtPeer({ peer, client, cipher, sql: db.sql, username, provider: "microsoft", redirectUri: REDIRECT_URI });
  const expire = (id: string) => db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = ${id}`;
  const versionOf = async (id: string) =>
    (await db.sql<{ version: number }[]>`select version::int as version from token_sets where integration_id = ${id}`)[0]?.version;
  const statusOf = async (id: string) => (await db.sql<{ status: string }[]>`select status from integrations where id = ${id}`)[0]?.status;
  async function storedRefreshToken(id: string): Promise<string> {
    const [row] = await db.sql<{ refresh_token_ciphertext: string }[]>`select refresh_token_ciphertext from token_sets where integration_id = ${id}`;
    return cipher.decrypt({ ciphertext: row?.refresh_token_ciphertext ?? "", context: id });
  }
  const auditEvents = (id: string) =>
    db.sql<{ action: string; outcome: string; reason: string; caller: string; request_id: string; details: Record<string, string> }[]>`
      select action, outcome, reason, caller, request_id, details from audit_events
      where integration_id = ${id} and action like 'token.refresh%' order by sequence`;
  const failedWrites = (id: string) =>
    log.lines.filter((line) => line["integrationId"] === id && line["msg"] === "storing the refreshed token set failed; retrying from memory").length;
  const tokenIsAccepted = async (accessToken: string) =>
    (await fetch(`${peer.apiBase}/v1.0/me`, { headers: { authorization: `Bearer ${accessToken}` } })).status === 200;

  beforeAll(async () => {
    db = await createTestDatabase();
    const target = new URL(db.url);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-write-faults-"));
    cipher = await createLocalKeyringCipher({ dataDir, logger });
    ({ peer, client } = await startMicrosoftPeer({ secret: SECRET, redirectUri: REDIRECT_URI, logger }));
    // The audit trail keeps its own connection: what it records must not depend on the cut pool.
    audit = createPostgresAuditLog({ sql: db.sql, logger });
    patient = await tokenService("replica-patient");
    hasty = await tokenService("replica-hasty", { attempts: 2, baseMs: 20, capMs: 50 });
  });

  afterAll(async () => {
    proxy?.restore();
    for (const service of services) await service.close();
    for (const pool of pools) await pool.close(1);
    await audit?.close();
    await proxy?.close();
    await peer?.close();
    await db?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  afterEach(() => {
    // A failed test must not leave the next one without a database.
    proxy.restore();
    cutAfterNextRefresh = false;
  });

  it("retries a write whose connection dropped half done, and stores the rotated token", async () => {
    const { integrationId, refreshToken: original } = await connect("mid-write");
    await expire(integrationId);
    const integration = await patient.resolve({ integrationId });
    const before = peer.tokenRequests();
    // Hold the integration row: the write updates token_sets, then waits for this lock.
    const blocker = await db.sql.reserve();
    await blocker`begin`;
    await blocker`select 1 from integrations where id = ${integrationId} for update`;
    const issuing = awaitedLater(patient.tokenFor(ctx, integration, 60_000, []));
    await waitUntil(
      async () =>
        (
          await db.sql`select 1 from pg_stat_activity where datname = current_database() and application_name = 'oauth-broker'
                         and wait_event_type = 'Lock' and query like '%update token_sets set%'`
        ).length > 0,
      "the token write waits half done",
    );
    proxy.cut();
    await waitUntil(() => failedWrites(integrationId) >= 1, "the write attempt failed");
    await blocker`rollback`;
    blocker.release();
    proxy.restore();

    const issued = await issuing;
    expect(peer.tokenRequests() - before).toBe(1);
    expect(await tokenIsAccepted(issued.tokens.accessToken)).toBe(true);
    const rotated = await storedRefreshToken(integrationId);
    expect(rotated).not.toBe(original);
    expect(await versionOf(integrationId)).toBe(2);

    // The next refresh presents the stored rotated token; had the old one been kept, the peer
    // would now revoke the grant.
    await expire(integrationId);
    patient.evict(integrationId);
    const next = await patient.tokenFor(ctx, integration, 60_000, []);
    expect(await tokenIsAccepted(next.tokens.accessToken)).toBe(true);
    expect(await statusOf(integrationId)).toBe("active");
    expect(peer.tokenRequests() - before).toBe(2);
    await audit.flush();
    expect((await auditEvents(integrationId)).map((e) => `${e.action}/${e.outcome}`)).toEqual(["token.refreshed/success", "token.refreshed/success"]);
  });

  it("keeps a rotated refresh token in memory while the database stays away, stores it when it is back, and never drops it", async () => {
    const { integrationId, refreshToken: original } = await connect("long-outage");
    await expire(integrationId);
    const integration = await hasty.resolve({ integrationId });
    const before = peer.tokenRequests();
    cutAfterNextRefresh = true;
    const failure = (await hasty.tokenFor(ctx, integration, 60_000, []).catch((e: unknown) => e)) as BrokerError;
    expect(isBrokerError(failure, "database_unavailable")).toBe(true);
    expect(GRPC_CODE_BY_ERROR[failure.code]).toBe(Code.Unavailable);
    expect(failure.retryAfterMs).toBeGreaterThan(0);
    const alert = log.lines.find((line) => line["integrationId"] === integrationId && String(line["msg"]).startsWith("ALERT:"));
    expect(alert).toMatchObject({ level: 50, provider: "microsoft" });
    expect(await versionOf(integrationId)).toBe(1);

    proxy.restore();
    await waitUntil(async () => (await versionOf(integrationId)) === 2, "the kept token set is stored in the background");
    const rotated = await storedRefreshToken(integrationId);
    expect(rotated).not.toBe(original);
    // The kept access token is what callers get now: no second provider call.
    const issued = await hasty.tokenFor(ctx, integration, 60_000, []);
    expect(peer.tokenRequests() - before).toBe(1);
    expect(await tokenIsAccepted(issued.tokens.accessToken)).toBe(true);

    await expire(integrationId);
    hasty.evict(integrationId);
    const next = await hasty.tokenFor(ctx, integration, 60_000, []);
    expect(await tokenIsAccepted(next.tokens.accessToken)).toBe(true);
    expect(await statusOf(integrationId)).toBe("active");
    expect(peer.tokenRequests() - before).toBe(2);

    // One event per refresh: the first one's waited for its write and names its caller.
    await audit.flush();
    const events = await auditEvents(integrationId);
    expect(events.map((e) => `${e.action}/${e.outcome}`)).toEqual(["token.refreshed/success", "token.refreshed/success"]);
    expect(events[0]).toMatchObject({ caller: "mailer", request_id: "req-write-faults", details: { stored_after_retry: "true", trigger: "expiring" } });
    for (const secret of [original, rotated, issued.tokens.accessToken, next.tokens.accessToken]) expect(log.text()).not.toContain(secret);
  });

  it("starts this replica's next refresh from the kept rotated token, not the invalidated stored one", async () => {
    const { integrationId } = await connect("next-refresh");
    await expire(integrationId);
    const integration = await hasty.resolve({ integrationId });
    cutAfterNextRefresh = true;
    const failure = await hasty.tokenFor(ctx, integration, 60_000, []).catch((e: unknown) => e);
    expect(isBrokerError(failure, "database_unavailable")).toBe(true);
    proxy.restore();
    // Right away, whether or not the background write has landed yet.
    await hasty.refreshNow(ctx, integrationId);
    await expire(integrationId);
    hasty.evict(integrationId);
    const next = await hasty.tokenFor(ctx, integration, 60_000, []);
    expect(await tokenIsAccepted(next.tokens.accessToken)).toBe(true);
    expect(await statusOf(integrationId)).toBe("active");
  });

  it("lets a replica cut off from the database store its kept rotated token before another replica tries the stored one", async () => {
    const { integrationId, refreshToken: original } = await connect("two-replicas");
    // A short lease: it lapses while the keeper cannot renew it.
    const keeper = await tokenService("replica-keeper", { attempts: 2, baseMs: 20, capMs: 50 }, 1);
    // The other replica reaches PostgreSQL directly: the cut is between the keeper and the database.
    const taker = createTokenService({
      store: { integrations: createIntegrationRepository(db.sql), tokenSets: createTokenSetRepository(db.sql) },
      cipher,
      providers: { get: (id) => (id === "microsoft" ? client : undefined) },
      clock: systemClock,
      logger,
      replicaId: "replica-taker",
      // Its patience with the marking keeper is a lease of its own: one long enough that only a
      // keeper that never stores runs it out, not one slowed by a loaded machine's reconnect.
      settings: { cacheMaxEntries: 100, leaseSeconds: 30 },
    });
    services.push(taker);
    await expire(integrationId);
    const integration = await keeper.resolve({ integrationId });
    const before = peer.tokenRequests();
    cutAfterNextRefresh = true;
    const failure = await keeper.tokenFor(ctx, integration, 60_000, []).catch((e: unknown) => e);
    expect(isBrokerError(failure, "database_unavailable")).toBe(true);
    await waitUntil(
      async () =>
        (await db.sql`select 1 from token_sets where integration_id = ${integrationId} and refresh_sent_by = 'replica-keeper' and lease_expires_at < now()`).length > 0,
      "the keeper's lease lapsed while its rotated token waits in memory",
    );

    const taking = awaitedLater(taker.tokenFor(ctx, integration, 60_000, []));
    await waitUntil(
      () => log.lines.some((line) => line["integrationId"] === integrationId && String(line["msg"]).startsWith("the refresh lease is marked sent by another replica")),
      "the taker waits for the replica that marked the lease",
    );
    proxy.restore();
    const issued = await taking;

    // The keeper's rotated set, stored after the restore: the spent refresh token was never replayed.
    expect(peer.tokenRequests() - before).toBe(1);
    expect(await tokenIsAccepted(issued.tokens.accessToken)).toBe(true);
    expect(await versionOf(integrationId)).toBe(2);
    expect(await storedRefreshToken(integrationId)).not.toBe(original);
    expect(await statusOf(integrationId)).toBe("active");
  });
});
