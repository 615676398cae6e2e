/**
 * The audit trail's disclosure rule against real PostgreSQL, two token services as two replicas
 * sharing one database and its change notifications, and a Microsoft-like peer: a first
 * disclosure's `token.issued` row is committed before the caller is answered, and a failing
 * write fails the call without being remembered; 1,000 repeats become one `token.reissued` row
 * counting 1000, chained, verified, exported and listed; a replaced token (a refresh on either
 * replica) writes the old version's counts at once and starts a new first disclosure.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { isBrokerError } from "../../src/domain/errors.js";
import { systemClock, type Cipher, type ProviderClient } from "../../src/domain/ports.js";
import { createTokenService, type TokenService } from "../../src/domain/tokens/token-service.js";
import type { RequestContext } from "../../src/domain/types.js";
import { verifyAuditChain } from "../../src/storage/audit-chain.js";
import { exportAuditEvents } from "../../src/storage/audit-export.js";
import { AUDIT_WRITE_FAILED_MESSAGE, createPostgresAuditLog, type PostgresAuditLog } from "../../src/storage/audit-log.js";
import { createAuditTrailReader } from "../../src/storage/audit-query.js";
import { createDatabase, type Database } from "../../src/storage/database.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createTokenNotifications, type TokenNotifications } from "../../src/storage/token-notifications.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectAtPeer, waitUntil } from "../support/peer-connect.js";
import { type OidcPeer } from "../support/peers/oidc-peer.js";
import { startMicrosoftPeer } from "../support/peers/microsoft-peer.js";
import { captureLogger } from "../support/log-capture.js";

const REDIRECT_URI = "http://127.0.0.1:18091/oauth/callback/microsoft";
const SECRET = "ms~secret.value_disclosures";

interface Replica {
  readonly database: Database;
  readonly notifications: TokenNotifications;
  readonly audit: PostgresAuditLog;
  readonly tokens: TokenService;
}

interface EventRow {
  action: string;
  caller: string;
  request_id: string;
  scopes: string[];
  details: Record<string, string>;
}

const caller = (subject: string, requestId: string): RequestContext => ({
  principal: { kind: "service", subject, issuer: "test" },
  requestId,
  peer: "10.9.8.7:6543",
});

describe("token disclosures in the audit trail", () => {
  const { logger } = captureLogger();
  let db: TestDatabase;
  let dataDir: string;
  let peer: OidcPeer;
  let client: ProviderClient;
  let cipher: Cipher;
  let a: Replica;
  let b: Replica;
  const replicas: Replica[] = [];

  async function replica(name: string): Promise<Replica> {
    const database = createDatabase({ url: db.url, poolSize: 4, logger });
    const notifications = await createTokenNotifications(database.sql, logger);
    const audit = createPostgresAuditLog({ sql: database.sql, logger });
    const tokens = createTokenService({
      store: { integrations: createIntegrationRepository(database.sql), tokenSets: createTokenSetRepository(database.sql) },
      cipher,
      providers: { get: (id) => (id === "microsoft" ? client : undefined) },
      clock: systemClock,
      logger,
      replicaId: name,
      changes: notifications,
      audit,
      settings: { cacheMaxEntries: 100, leaseSeconds: 5 },
    });
    const created = { database, notifications, audit, tokens };
    replicas.push(created);
    return created;
  }

  const connect = async (username: string) =>
    (await connectAtPeer({ peer, client, cipher, sql: db.sql, username, provider: "microsoft", redirectUri: REDIRECT_URI })).integrationId;

  async function tokenFor(on: Replica, ctx: RequestContext, integrationId: string, scopes: string[] = []) {
    return on.tokens.tokenFor(ctx, await on.tokens.resolve({ integrationId }), 60_000, scopes);
  }

  /** What the trail holds now, without waiting for any writer. */
  const events = (integrationId: string, callerName: string) =>
    db.sql<EventRow[]>`
      select action, caller, request_id, scopes, details from audit_events
      where integration_id = ${integrationId} and caller = ${callerName} order by sequence`;

  async function tokenVersion(integrationId: string): Promise<string> {
    const [row] = await db.sql<{ version: string }[]>`select version::text from token_sets where integration_id = ${integrationId}`;
    return row?.version ?? "";
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-disclosures-"));
    cipher = await createLocalKeyringCipher({ dataDir, logger });
    ({ peer, client } = await startMicrosoftPeer({ secret: SECRET, redirectUri: REDIRECT_URI, logger }));
    a = await replica("replica-a");
    b = await replica("replica-b");
  });

  afterAll(async () => {
    for (const { tokens, audit, notifications, database } of replicas) {
      await tokens.close();
      await audit.close();
      await notifications.close();
      await database.close(1);
    }
    await peer?.close();
    await db?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("answers a first disclosure only once its token.issued row is committed", async () => {
    const integrationId = await connect("ada");
    await tokenFor(a, caller("billing", "req-first"), integrationId, ["User.Read", "User.Read"]);
    expect(await events(integrationId, "billing")).toEqual([
      { action: "token.issued", caller: "billing", request_id: "req-first", scopes: ["User.Read"], details: { token_version: await tokenVersion(integrationId) } },
    ]);
  });

  it("fails the call whose first disclosure cannot be written, and treats the next call as a first disclosure again", async () => {
    const integrationId = await connect("brian");
    await db.sql.unsafe(`
      create function refuse_audit() returns trigger language plpgsql as $$ begin raise exception 'audit refused'; end $$;
      create trigger refuse_audit before insert on audit_events for each row when (new.caller = 'refused') execute function refuse_audit()`);
    try {
      const failure = await tokenFor(a, caller("refused", "req-refused"), integrationId).catch((error: unknown) => error);
      expect(isBrokerError(failure, "internal")).toBe(true);
      expect(String((failure as Error).message)).toBe(AUDIT_WRITE_FAILED_MESSAGE);
    } finally {
      await db.sql.unsafe(`drop trigger refuse_audit on audit_events; drop function refuse_audit()`);
    }
    await tokenFor(a, caller("refused", "req-again"), integrationId);
    expect((await events(integrationId, "refused")).map((e) => [e.action, e.request_id])).toEqual([["token.issued", "req-again"]]);
  });

  it("writes 1,000 repeats as one token.reissued row counting 1000, chained, verified, exported and listed", async () => {
    const integrationId = await connect("chen");
    const version = await tokenVersion(integrationId);
    await tokenFor(a, caller("mailer", "req-0"), integrationId);
    const integration = await a.tokens.resolve({ integrationId });
    await Promise.all(Array.from({ length: 1_000 }, (_, i) => a.tokens.tokenFor(caller("mailer", `req-${i + 1}`), integration, 60_000, [])));
    await a.audit.flush();
    expect((await events(integrationId, "mailer")).map((e) => e.action)).toEqual(["token.issued"]);

    await a.tokens.flushDisclosures();
    const rows = await events(integrationId, "mailer");
    expect(rows.map((e) => e.action)).toEqual(["token.issued", "token.reissued"]);
    expect(rows[1]).toMatchObject({
      request_id: "req-1000",
      details: { token_version: version, count: "1000", first_request_id: "req-1", last_request_id: "req-1000" },
    });
    const { first_seen: firstSeen = "", last_seen: lastSeen = "" } = rows[1]?.details ?? {};
    expect(Date.parse(firstSeen)).toBeLessThanOrEqual(Date.parse(lastSeen));

    expect((await verifyAuditChain(db.sql)).intact).toBe(true);
    const lines: string[] = [];
    await exportAuditEvents({ sql: db.sql, writeLine: async (line) => void lines.push(line) });
    const exported = lines.map((line) => JSON.parse(line) as { action: string; caller: string; details: Record<string, string> }).filter((e) => e.caller === "mailer");
    expect(exported.map((e) => [e.action, e.details["count"]])).toEqual([["token.issued", undefined], ["token.reissued", "1000"]]);
    const listed = await createAuditTrailReader(db.sql).list({ action: "token.reissued", caller: "mailer" }, { afterSequence: 0n, limit: 10 });
    expect(listed.map((e) => e.details["count"])).toEqual(["1000"]);
  });

  it("on a refresh, writes the old version's counts on both replicas at once and starts a new first disclosure", async () => {
    const integrationId = await connect("dora");
    const before = await tokenVersion(integrationId);
    for (const [on, name] of [[a, "poller-a"], [b, "poller-b"]] as const) {
      for (let i = 0; i < 4; i++) await tokenFor(on, caller(name, `${name}-${i}`), integrationId);
    }
    // RefreshIntegration on replica a: a new token set, a new version.
    await a.tokens.refreshNow(caller("ops", "req-refresh"), integrationId);
    const after = await tokenVersion(integrationId);
    expect(Number(after)).toBeGreaterThan(Number(before));
    await tokenFor(a, caller("poller-a", "poller-a-new"), integrationId);
    const issued = (rows: EventRow[]) => rows.filter((e) => e.action === "token.issued").map((e) => [e.request_id, e.details["token_version"]]);
    expect(issued(await events(integrationId, "poller-a"))).toEqual([
      ["poller-a-0", before],
      ["poller-a-new", after],
    ]);

    // Replica b learns of the new version from the change notification: its counts go out without a pass.
    const reissued = async (name: string) =>
      (await events(integrationId, name)).filter((e) => e.action === "token.reissued").map((e) => [e.details["token_version"], e.details["count"]]);
    await waitUntil(async () => (await reissued("poller-b")).length === 1, "replica b writes its counts of the replaced token", 10_000, 20);
    expect(await reissued("poller-b")).toEqual([[before, "3"]]);
    await waitUntil(async () => (await reissued("poller-a")).length === 1, "replica a writes its counts of the replaced token", 10_000, 20);
    expect(await reissued("poller-a")).toEqual([[before, "3"]]);

    await tokenFor(b, caller("poller-b", "poller-b-new"), integrationId);
    expect(issued(await events(integrationId, "poller-b"))).toEqual([
      ["poller-b-0", before],
      ["poller-b-new", after],
    ]);
  });
});
