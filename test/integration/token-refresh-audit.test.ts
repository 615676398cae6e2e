/**
 * Refreshes as the audit trail and the provider see them, against real PostgreSQL and
 * Microsoft-like peers that rotate refresh tokens: every refresh — a caller's, a forced one, the
 * proactive refresher's — leaves exactly one `token.refreshed` or `token.refresh_failed` event
 * naming the integration, provider, request id, caller and reason, never a token; and a
 * `min_valid_for` longer than the provider's token lifetime is refused from what the last
 * refresh showed, without asking the provider again.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { isBrokerError, type BrokerError } from "../../src/domain/errors.js";
import { systemClock, type Cipher, type ProviderClient } from "../../src/domain/ports.js";
import { createTokenService, type TokenService } from "../../src/domain/tokens/token-service.js";
import type { RequestContext } from "../../src/domain/types.js";
import { startProactiveRefresher } from "../../src/jobs/proactive-refresh.js";
import { createProviderClient } from "../../src/providers/create-provider-client.js";
import { verifyAuditChain } from "../../src/storage/audit-chain.js";
import { createPostgresAuditLog, type PostgresAuditLog } from "../../src/storage/audit-log.js";
import { createDatabase, type Database } from "../../src/storage/database.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { GRPC_CODE_BY_ERROR } from "../../src/transport/error-mapping.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectAtPeer } from "../support/peer-connect.js";
import { startOidcPeer, type OidcPeer } from "../support/peers/oidc-peer.js";
import { testProviderConfig } from "../support/peers/provider-config.js";
import { captureLogger } from "../support/log-capture.js";

const REDIRECT_URI = "http://127.0.0.1:18082/oauth/callback/microsoft";
const SHORT_REDIRECT_URI = "http://127.0.0.1:18082/oauth/callback/shortlived";
const SECRET = "ms~secret.value_3";
const SHORT_TTL_SECONDS = 30;

const caller = (requestId: string): RequestContext => ({
  principal: { kind: "service", subject: "mailer", issuer: "test" },
  requestId,
  peer: "10.1.2.3:4567",
});

interface AuditRow {
  action: string;
  outcome: string;
  reason: string;
  caller: string;
  caller_kind: string;
  user_id: string;
  integration_id: string;
  provider: string;
  request_id: string;
  peer: string;
  details: Record<string, string>;
}

describe("refreshes in the audit trail", () => {
  const { logger } = captureLogger();
  let db: TestDatabase;
  let dataDir: string;
  let peer: OidcPeer;
  let shortPeer: OidcPeer;
  let client: ProviderClient;
  let shortClient: ProviderClient;
  let cipher: Cipher;
  let database: Database;
  let audit: PostgresAuditLog;
  let tokens: TokenService;

  const connect = (username: string) =>
    connectAtPeer({ peer, client, cipher, sql: db.sql, username, provider: "microsoft", redirectUri: REDIRECT_URI });
  const expire = (id: string) => db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = ${id}`;
  async function refreshEvents(id: string): Promise<AuditRow[]> {
    await audit.flush();
    return db.sql<AuditRow[]>`
      select action, outcome, reason, caller, caller_kind, user_id, integration_id, provider, request_id, peer, details
      from audit_events where integration_id = ${id} and action like 'token.refresh%' order by sequence`;
  }
  /** Every token the integration ever had that the database still knows, plus the given ones. */
  async function secretsOf(id: string, known: string[]): Promise<string[]> {
    const [row] = await db.sql<{ a: string; r: string }[]>`
      select access_token_ciphertext as a, refresh_token_ciphertext as r from token_sets where integration_id = ${id}`;
    const stored = row ? await cipher.decryptBatch([{ ciphertext: row.a, context: id }, { ciphertext: row.r, context: id }]) : [];
    return [...stored, ...known].filter((value) => value.length > 0);
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-refresh-audit-"));
    cipher = await createLocalKeyringCipher({ dataDir, logger });
    const clients = (redirectUri: string) => [
      { client_id: "broker-client", client_secret: SECRET, redirect_uris: [redirectUri], token_endpoint_auth_method: "client_secret_post" as const },
    ];
    peer = await startOidcPeer({ flavor: "microsoft", accessTokenTtlSeconds: 3600, rotateRefreshTokens: true, clients: clients(REDIRECT_URI) });
    shortPeer = await startOidcPeer({
      flavor: "microsoft",
      accessTokenTtlSeconds: SHORT_TTL_SECONDS,
      rotateRefreshTokens: true,
      clients: clients(SHORT_REDIRECT_URI),
    });
    const configFor = (id: string, target: OidcPeer) =>
      testProviderConfig({
        id,
        kind: "microsoft",
        clientSecret: SECRET,
        clientAuthMethod: "client_secret_post",
        tenant: "organizations",
        endpoints: { issuer: target.issuer, api: target.apiBase },
      });
    client = await createProviderClient(configFor("microsoft", peer), { logger });
    shortClient = await createProviderClient(configFor("shortlived", shortPeer), { logger });
    database = createDatabase({ url: db.url, poolSize: 4, logger });
    audit = createPostgresAuditLog({ sql: database.sql, logger });
    tokens = createTokenService({
      store: { integrations: createIntegrationRepository(database.sql), tokenSets: createTokenSetRepository(database.sql) },
      cipher,
      providers: { get: (id) => (id === "microsoft" ? client : id === "shortlived" ? shortClient : undefined) },
      clock: systemClock,
      logger,
      replicaId: "replica-audit",
      audit,
      // A failing provider is given up on after 4 s: the outage tests wait that long, and an
      // ordinary refresh on a loaded machine stays well inside it.
      settings: { cacheMaxEntries: 100, leaseSeconds: 5, breakerFailureThreshold: 100, defaultDeadlineMs: 4_000 },
    });
  });

  afterAll(async () => {
    await tokens?.close();
    await audit?.close();
    await database?.close(1);
    await peer?.close();
    await shortPeer?.close();
    await db?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  // First in the file: the refresher claims every integration that is due, and later tests leave some due.
  describe("by the proactive refresher", () => {
    const refresher = () =>
      startProactiveRefresher({
        claim: (request) => createTokenSetRepository(database.sql).claimExpiring(request),
        tokenService: tokens,
        logger,
        replicaId: "replica-audit",
        windowMs: 300_000,
        intervalMs: 60_000,
        leaseMs: 5_000,
        schedule: false,
      });
    const dueSoon = async (id: string) => {
      await db.sql`update token_sets set expires_at = now() + interval '60 seconds' where integration_id = ${id}`;
      await db.sql`update integrations set last_refreshed_at = now() - interval '59 minutes' where id = ${id}`;
    };

    it("records its refresh as the system's, with a request id of its own", async () => {
      const { integrationId } = await connect("ahead-ok");
      await dueSoon(integrationId);
      const job = refresher();
      expect(await job.runOnce()).toBe(1);
      await job.stop();
      const events = await refreshEvents(integrationId);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({
        action: "token.refreshed",
        outcome: "success",
        reason: "",
        caller: "proactive-refresh",
        caller_kind: "system",
        provider: "microsoft",
        user_id: "ahead-ok",
        details: { trigger: "proactive", rotated: "true" },
      });
      expect(events[0]?.request_id).toMatch(/^[0-9a-f-]{36}$/);
    });

    it("records its failure once, with the reason", async () => {
      const { integrationId } = await connect("ahead-down");
      await dueSoon(integrationId);
      peer.setTokenEndpointFault("503");
      try {
        const job = refresher();
        expect(await job.runOnce()).toBe(0);
        await job.stop();
      } finally {
        peer.setTokenEndpointFault("none");
      }
      const events = await refreshEvents(integrationId);
      expect(events.map((e) => [e.action, e.outcome, e.reason, e.caller_kind])).toEqual([
        ["token.refresh_failed", "failure", "PROVIDER_UNAVAILABLE", "system"],
      ]);
    });
  });

  describe("by callers", () => {
    it("leaves one token.refreshed for concurrent callers sharing a refresh, naming the caller and never a token", async () => {
      const { integrationId, refreshToken: original } = await connect("storm");
      await expire(integrationId);
      tokens.evict(integrationId);
      const integration = await tokens.resolve({ integrationId });
      const issued = await Promise.all(Array.from({ length: 10 }, (_, i) => tokens.tokenFor(caller(`req-${i}`), integration, 60_000, [])));
      expect(new Set(issued.map((t) => t.tokens.accessToken)).size).toBe(1);
      const events = await refreshEvents(integrationId);
      expect(events).toEqual([
        {
          action: "token.refreshed",
          outcome: "success",
          reason: "",
          caller: "mailer",
          caller_kind: "service",
          user_id: "storm",
          integration_id: integrationId,
          provider: "microsoft",
          request_id: "req-0",
          peer: "10.1.2.3:4567",
          details: { trigger: "expiring", rotated: "true" },
        },
      ]);
      const trail = JSON.stringify(await db.sql`select * from audit_events`);
      for (const secret of await secretsOf(integrationId, [original, issued[0]?.tokens.accessToken ?? ""])) expect(trail).not.toContain(secret);
    });

    it("records a forced refresh (RefreshIntegration, sync) as forced", async () => {
      const { integrationId } = await connect("forced");
      const result = await tokens.refreshNow(caller("req-forced"), integrationId);
      expect(result.refreshed).toBe(true);
      const events = await refreshEvents(integrationId);
      expect(events.map((e) => [e.action, e.request_id, e.details["trigger"]])).toEqual([["token.refreshed", "req-forced", "forced"]]);
    });

    it("records one token.refresh_failed for a refresh that failed after several provider attempts", async () => {
      const { integrationId } = await connect("outage");
      await expire(integrationId);
      const integration = await tokens.resolve({ integrationId });
      peer.setTokenEndpointFault("503");
      const before = peer.tokenRequests();
      try {
        const failure = await tokens.tokenFor(caller("req-outage"), integration, 60_000, []).catch((e: unknown) => e);
        // Named in full, so that another outcome says what it was.
        expect(isBrokerError(failure) ? [failure.code, failure.reason, failure.message] : failure).toEqual(["provider_unavailable", "PROVIDER_UNAVAILABLE", expect.any(String)]);
      } finally {
        peer.setTokenEndpointFault("none");
      }
      expect(peer.tokenRequests() - before).toBeGreaterThan(1);
      const events = await refreshEvents(integrationId);
      expect(events.map((e) => [e.action, e.outcome, e.reason, e.request_id])).toEqual([
        ["token.refresh_failed", "failure", "PROVIDER_UNAVAILABLE", "req-outage"],
      ]);
      // Keep the failed integration out of later refresher passes.
      await db.sql`update integrations set status = 'needs_reauth' where id = ${integrationId}`;
    });

    it("records a refused grant as token.refresh_failed with INTEGRATION_NEEDS_REAUTH", async () => {
      const { integrationId } = await connect("revoked");
      await peer.revokeGrantsFor("revoked");
      await expire(integrationId);
      const integration = await tokens.resolve({ integrationId });
      const failure = await tokens.tokenFor(caller("req-revoked"), integration, 60_000, []).catch((e: unknown) => e);
      expect(isBrokerError(failure, "integration_needs_reauth")).toBe(true);
      const events = await refreshEvents(integrationId);
      expect(events.map((e) => [e.action, e.reason, e.caller, e.request_id, e.details["cause"]])).toEqual([
        ["token.refresh_failed", "INTEGRATION_NEEDS_REAUTH", "mailer", "req-revoked", "invalid_grant"],
      ]);
    });

    it("keeps the chain intact", async () => {
      await audit.flush();
      expect((await verifyAuditChain(db.sql)).intact).toBe(true);
    });
  });

  describe("min_valid_for longer than the provider's token lifetime", () => {
    it("refreshes once, then answers TOKEN_LIFETIME_TOO_SHORT without calling the provider again", async () => {
      const { integrationId } = await connectAtPeer({
        peer: shortPeer,
        client: shortClient,
        cipher,
        sql: db.sql,
        username: "short",
        provider: "shortlived",
        redirectUri: SHORT_REDIRECT_URI,
      });
      const integration = await tokens.resolve({ integrationId });
      const before = shortPeer.tokenRequests();
      const ask = () =>
        tokens.tokenFor(caller("req-short"), integration, 120_000, []).then(
          (): never => {
            throw new Error("a token was handed out for a min_valid_for the provider cannot meet");
          },
          (e: unknown) => e as BrokerError,
        );

      const first = await ask();
      expect(isBrokerError(first, "failed_precondition")).toBe(true);
      expect(GRPC_CODE_BY_ERROR[first.code]).toBe(Code.FailedPrecondition);
      expect(first.reason).toBe("TOKEN_LIFETIME_TOO_SHORT");
      expect(Number(first.metadata["token_lifetime_seconds"])).toBeLessThanOrEqual(SHORT_TTL_SECONDS);
      expect(first.fieldViolations.map((v) => v.field)).toEqual(["min_valid_for"]);
      expect(shortPeer.tokenRequests() - before).toBe(1);

      const again = await Promise.all([ask(), ask(), ask(), ask()]);
      for (const failure of again) expect(failure).toMatchObject({ code: "failed_precondition", reason: "TOKEN_LIFETIME_TOO_SHORT" });
      expect(shortPeer.tokenRequests() - before).toBe(1);

      // What the provider can give is still given, from the token that refresh stored.
      const fits = await tokens.tokenFor(caller("req-short-fits"), integration, 10_000, []);
      expect(fits.tokens.expiresAt.getTime()).toBeGreaterThan(Date.now() + 10_000);
      expect(shortPeer.tokenRequests() - before).toBe(1);
      expect((await refreshEvents(integrationId)).map((e) => e.action)).toEqual(["token.refreshed"]);
    });
  });

  describe("the connection the refreshed grants came from", () => {
    it("went through CompleteAuthorization, which audits it like the callback does", async () => {
      const { integrationId } = await connect("audited");
      const [row] = await db.sql<{ user_id: string; provider: string }[]>`
        select user_id, provider from audit_events where integration_id = ${integrationId} and action = 'authorization.completed'`;
      expect(row).toEqual({ user_id: "audited", provider: "microsoft" });
    });
  });
});
