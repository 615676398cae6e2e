/**
 * The whole broker in-process on a real PostgreSQL, once with the local keyring and once with
 * Vault transit (the emulator): a user connects a sandbox account, a caller gets its token, the
 * token is refreshed at the provider — and afterwards no table and no log line holds any token,
 * every ciphertext has its key service's prefix, and swapping two rows' ciphertexts fails closed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { verifyAuditChain } from "../../src/storage/audit-chain.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { startVaultEmulator, type VaultEmulator } from "../support/vault-transit-emulator.js";
import { createBrowser } from "../support/peers/browser.js";
import { arriveAtCallback, consentAtProvider, startAuthorization } from "../support/browser-flow.js";
import { captureLogger } from "../support/log-capture.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startInProcessBroker, type InProcessBroker } from "../support/in-process-broker.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { waitUntil } from "../support/wait-until.js";

const TTL_SECONDS = 62;

describe.each([
  { mode: "local keyring", prefix: /^local:v\d+:/ },
  { mode: "Vault transit", prefix: /^vault:v\d+:/ },
])("tokens at rest with the $mode", ({ mode, prefix }) => {
  let db: TestDatabase;
  let vault: VaultEmulator | undefined;
  let running: InProcessBroker;
  let log: ReturnType<typeof captureLogger>["log"];
  let httpUrl: string;
  let userToken: string;
  let adminToken: string;
  const issued: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    const env: Record<string, string> = {};
    if (mode === "Vault transit") {
      vault = await startVaultEmulator();
      Object.assign(env, { VAULT_ADDR: vault.url, VAULT_TOKEN: vault.rootToken });
    }
    const captured = captureLogger();
    log = captured.log;
    running = await startInProcessBroker({
      yaml: `sandbox:\n  enabled: true\nproviders:\n  sandbox:\n    kind: sandbox\n    defaultAccessTokenLifetimeSeconds: ${TTL_SECONDS}\n`,
      databaseUrl: db.url,
      env,
      logger: captured.logger,
      name: "oauth-broker-rest",
    });
    httpUrl = running.httpUrl;
    userToken = await running.token("alice", "user");
    adminToken = await running.token("ops", "service", ["admin"]);
  }, 60_000);

  afterAll(async () => {
    await running?.stop();
    await vault?.close();
    await db?.drop();
  });

  async function getToken(minValidForMs: number) {
    const client = grpcClient(running.grpcAddress);
    try {
      return await unary(
        client,
        TokenService.method.getAccessToken,
        { userId: "alice", provider: "sandbox", minValidFor: durationFromMs(minValidForMs) },
        { metadata: { authorization: `Bearer ${adminToken}` } },
      );
    } finally {
      client.close();
    }
  }

  it("connects, hands out a token, refreshes it just in time, and stores only ciphertexts", async () => {
    const browser = createBrowser();
    const started = await startAuthorization(
      httpUrl,
      { authorization: `Bearer ${userToken}` },
      { provider: "sandbox", scopes: ["openid", "offline_access", "sandbox.read"] },
      browser,
    );
    const callback = await consentAtProvider(started.authorizationUrl, { username: "carol" }, browser);
    const { location } = await arriveAtCallback(browser, callback);
    expect(location?.searchParams.get("status")).toBe("connected");

    const first = await getToken(30_000);
    expect(first.headers.get("cache-control")[0]).toBe("no-store");
    issued.push(first.response.accessToken);
    expect(first.response.integration?.grantedScopes).toContain("sandbox.read");

    // Asking for more than the token has left forces a refresh at the provider: the ask is made
    // once the first token's expiry (rounded up from the wire's whole seconds) is nearer than it.
    const askMs = (TTL_SECONDS - 1) * 1000;
    const firstExpiresBy = (Number(first.response.expireTime?.seconds) + 1) * 1000;
    await waitUntil(() => firstExpiresBy - Date.now() < askMs, "the first token has less left than the ask");
    const askedAt = Date.now();
    const second = await getToken(askMs);
    issued.push(second.response.accessToken);
    expect(second.response.accessToken).not.toBe(first.response.accessToken);
    // Valid for the ask from when it was answered, which is no earlier than when it was asked.
    expect((Number(second.response.expireTime?.seconds) + 1) * 1000).toBeGreaterThan(askedAt + askMs);

    // The cache answers the next call with the same token.
    const third = await getToken(30_000);
    expect(third.response.accessToken).toBe(second.response.accessToken);

    const tooLong = (await getToken(3_600_000).catch((e) => e)) as GrpcFailure;
    expect(tooLong.code).toBe(Code.FailedPrecondition);
  }, 60_000);

  it("leaves no token in any table or log line, and only prefixed ciphertexts", async () => {
    const { sql } = running.broker.database;
    const tables = await sql<{ table_name: string }[]>`
      select table_name from information_schema.tables where table_schema = 'public'`;
    for (const { table_name } of tables) {
      const rows = await sql.unsafe(`select t::text as row from "${table_name}" t`);
      const dump = rows.map((r) => String(r["row"])).join("\n");
      for (const token of issued) expect(dump, `${table_name} holds a token`).not.toContain(token);
    }
    const [set] = await sql<{ access_token_ciphertext: string; refresh_token_ciphertext: string }[]>`
      select access_token_ciphertext, refresh_token_ciphertext from token_sets`;
    expect(set?.access_token_ciphertext).toMatch(prefix);
    expect(set?.refresh_token_ciphertext).toMatch(prefix);
    const [session] = await sql`select count(*)::int as n from authorization_sessions`;
    expect(session?.["n"]).toBe(0);
    const output = log.text();
    for (const token of issued) expect(output).not.toContain(token);
    // Each token's first disclosure, its counted repeat and the authorization left an audit event; the chain verifies.
    await running.broker.jobs.disclosureCounts.runOnce();
    const actions = await sql<{ action: string; n: number }[]>`select action, count(*)::int as n from audit_events group by action`;
    expect(Object.fromEntries(actions.map((a) => [a.action, a.n]))).toMatchObject({ "token.issued": 2, "token.reissued": 1, "authorization.completed": 1 });
    expect((await verifyAuditChain(sql)).intact).toBe(true);
    expect(output).toContain("token refreshed");
  });

  it.runIf(mode === "Vault transit")("keeps answering from the cache while Vault is sealed, and recovers by itself", async () => {
    const cached = await getToken(30_000);
    vault!.seal();
    try {
      const whileSealed = await getToken(30_000);
      expect(whileSealed.response.accessToken).toBe(cached.response.accessToken);
      const ready = await fetch(`${httpUrl}/readyz`);
      expect(ready.status).toBe(503);
      expect(JSON.stringify(await ready.json())).toContain("key_service");
      // Nothing cached for a token that must be refreshed: UNAVAILABLE with a retry hint.
      const failure = (await getToken((TTL_SECONDS + 60) * 1000).catch((e) => e)) as GrpcFailure;
      expect(failure.code).toBe(Code.Unavailable);
      expect(failure.errorInfo).toMatchObject({ reason: "KEY_SERVICE_UNAVAILABLE", domain: "oauth-broker" });
      expect(failure.retryDelayMs).toBeGreaterThan(0);
    } finally {
      vault!.unseal();
    }
    expect((await fetch(`${httpUrl}/readyz`)).status).toBe(200);
  });

  it("fails closed when two rows' ciphertexts are swapped", async () => {
    const { sql } = running.broker.database;
    // A second integration for another user, then swap the two access-token ciphertexts.
    const [original] = await sql<{ integration_id: string; access_token_ciphertext: string }[]>`
      select integration_id, access_token_ciphertext from token_sets limit 1`;
    const otherId = "00000000-0000-4000-8000-000000000001";
    await sql`insert into integrations (id, user_id, provider, external_account_id) values (${otherId}, 'bob', 'sandbox', 'bob-acct')`;
    const foreign = await running.broker.cipher.encrypt({ plaintext: "bobs-token", context: otherId });
    await sql`insert into token_sets (integration_id, access_token_ciphertext, expires_at) values (${otherId}, ${original!.access_token_ciphertext}, now() + interval '1 hour')`;
    await sql`update token_sets set access_token_ciphertext = ${foreign} where integration_id = ${original!.integration_id}`;
    await sql`select pg_notify(${"oauth_broker_token_sets"}, ${`${original!.integration_id}:999999`})`;

    const client = grpcClient(running.grpcAddress);
    const ask = (request: { userId: string; provider: string } | { integrationId: string }) =>
      unary(client, TokenService.method.getAccessToken, request, { metadata: { authorization: `Bearer ${adminToken}` } }).then(
        () => undefined,
        (e: unknown) => e as GrpcFailure,
      );
    // Alice's token may still be answered from the cache until the notification evicts it: the
    // first answer that is not the cached token is the signal that the broker read the row.
    let alice: GrpcFailure | undefined;
    await waitUntil(async () => (alice = await ask({ userId: "alice", provider: "sandbox" })) !== undefined, "the cached token is evicted");
    for (const failure of [alice, await ask({ integrationId: otherId })]) {
      expect(failure?.code).toBe(Code.Internal);
      expect(failure?.details).not.toContain("bobs-token");
    }
    client.close();
  });
});
