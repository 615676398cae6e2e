/**
 * The metrics as Prometheus sees them: the whole broker in-process (real PostgreSQL, sandbox
 * provider, local keyring), a scripted run — a browser connects an account, a service gets its
 * token twice, an operator forces a refresh, then a refresh the provider refuses and calls that
 * fail — and then one scrape of GET /metrics whose counters must match that script exactly, and
 * which must not contain any token, key, user id or integration id.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { createLogger } from "../../src/observability/logger.js";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startInProcessBroker, type InProcessBroker } from "../support/in-process-broker.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { captureLogger } from "../support/log-capture.js";
import { connectSandboxAccount } from "../support/browser-flow.js";
import { declaredFamilies, parseExposition, series, type Sample } from "../support/prometheus-text.js";

const TOKENS = "oauthbroker.v1.TokenService";
const INTEGRATIONS = "oauthbroker.v1.IntegrationService";

let db: TestDatabase;
let running: InProcessBroker;
let httpUrl: string;
let exposition: string;
let samples: Sample[];
let log: ReturnType<typeof captureLogger>["log"];
/** Everything that must never reach /metrics. */
const secrets: string[] = [];
// Distinctive, so a leak cannot hide behind a common word.
const userId = `metrics-user-${randomBytes(4).toString("hex")}`;
const externalName = `ext-${randomBytes(4).toString("hex")}`;

beforeAll(async () => {
  db = await createTestDatabase();
  const captured = captureLogger();
  log = captured.log;
  running = await startInProcessBroker({
    // No proactive pass during the script: its key service calls would make the counts racy.
    yaml: "sandbox:\n  enabled: true\ntokens:\n  proactiveRefreshIntervalSeconds: 3600\n",
    databaseUrl: db.url,
    logger: captured.logger,
    name: "oauth-broker-metrics",
  });
  httpUrl = running.httpUrl;
  const { dataDir } = running;
  const userToken = await running.token(userId, "user");
  const adminToken = await running.token("ops", "service", ["admin"]);
  secrets.push(userId, externalName, userToken, adminToken);

  const client = grpcClient(running.grpcAddress);
  const asAdmin = { metadata: { authorization: `Bearer ${adminToken}` } };
  const getToken = () =>
    unary(client, TokenService.method.getAccessToken, { userId, provider: "sandbox", minValidFor: durationFromMs(30_000) }, asAdmin);
  try {
    // 1. The browser flow: StartAuthorization over Connect, sandbox sign-in, callback.
    const integrationId = await connectSandboxAccount(httpUrl, userToken, externalName);
    secrets.push(integrationId);

    // 2. Two token requests: the first misses the in-memory cache, the second hits it.
    for (let i = 0; i < 2; i++) secrets.push((await getToken()).response.accessToken);

    // 3. A forced refresh; keep the refresh token it rotates away.
    const [before] = await db.sql<{ refresh_token_ciphertext: string }[]>`
      select refresh_token_ciphertext from token_sets where integration_id = ${integrationId}`;
    const refreshed = await unary(client, IntegrationService.method.refreshIntegration, { id: integrationId }, asAdmin);
    expect(refreshed.response.refreshed).toBe(true);

    // 4. A refresh the provider refuses: replaying the rotated-away refresh token is
    //    invalid_grant at oidc-provider (and revokes the grant), so the integration needs
    //    re-authorization and the RPC fails.
    await db.sql`update token_sets set refresh_token_ciphertext = ${before!.refresh_token_ciphertext}
                 where integration_id = ${integrationId}`;
    const refused = (await unary(client, IntegrationService.method.refreshIntegration, { id: integrationId }, asAdmin).catch(
      (error: unknown) => error,
    )) as GrpcFailure;
    expect(refused.code).toBe(Code.FailedPrecondition);

    // 5. Calls that fail before any provider or key service is involved.
    const reauth = (await getToken().catch((error: unknown) => error)) as GrpcFailure;
    expect(reauth.code).toBe(Code.FailedPrecondition);
    const missing = (await unary(
      client,
      TokenService.method.getAccessToken,
      { integrationId: "00000000-0000-4000-8000-00000000dead" },
      asAdmin,
    ).catch((error: unknown) => error)) as GrpcFailure;
    expect(missing.code).toBe(Code.NotFound);
  } finally {
    client.close();
  }

  // The refresh tokens and the keyring's keys, read with a cipher of the test's own (its calls
  // are not the broker's and are not counted).
  const reader = await createLocalKeyringCipher({ dataDir, logger: createLogger({ level: "silent" }) });
  const stored = await db.sql<{ integration_id: string; refresh_token_ciphertext: string | null }[]>`
    select integration_id, refresh_token_ciphertext from token_sets`;
  for (const row of stored) {
    if (row.refresh_token_ciphertext !== null) {
      secrets.push(await reader.decrypt({ ciphertext: row.refresh_token_ciphertext, context: row.integration_id }));
    }
  }
  const keyring = JSON.parse(await readFile(join(dataDir, "keyring.json"), "utf8")) as { keys: Array<{ key: string }> };
  secrets.push(...keyring.keys.map((entry) => entry.key));

  const scrape = await fetch(`${httpUrl}/metrics`);
  expect(scrape.status).toBe(200);
  expect(scrape.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  exposition = await scrape.text();
  samples = parseExposition(exposition);
}, 60_000);

afterAll(async () => {
  await running?.stop();
  await db?.drop();
});

describe("GET /metrics after scripted traffic", () => {
  it("counts every RPC by service, method and code", () => {
    const handled = series(samples, "grpc_server_handled_total");
    expect(handled).toEqual({
      "grpc_code=OK,grpc_method=StartAuthorization,grpc_service=oauthbroker.v1.AuthorizationService": 1,
      [`grpc_code=OK,grpc_method=GetAccessToken,grpc_service=${TOKENS}`]: 2,
      [`grpc_code=FAILED_PRECONDITION,grpc_method=GetAccessToken,grpc_service=${TOKENS}`]: 1,
      [`grpc_code=NOT_FOUND,grpc_method=GetAccessToken,grpc_service=${TOKENS}`]: 1,
      [`grpc_code=OK,grpc_method=RefreshIntegration,grpc_service=${INTEGRATIONS}`]: 1,
      [`grpc_code=FAILED_PRECONDITION,grpc_method=RefreshIntegration,grpc_service=${INTEGRATIONS}`]: 1,
    });
    expect(series(samples, "grpc_server_handling_seconds_count")).toEqual({
      "grpc_method=StartAuthorization,grpc_service=oauthbroker.v1.AuthorizationService": 1,
      [`grpc_method=GetAccessToken,grpc_service=${TOKENS}`]: 4,
      [`grpc_method=RefreshIntegration,grpc_service=${INTEGRATIONS}`]: 2,
    });
  });

  it("counts cache hits and misses, refreshes by result, and their latency", () => {
    expect(series(samples, "oauth_broker_token_cache_requests_total")).toEqual({ "result=hit": 1, "result=miss": 1 });
    expect(series(samples, "oauth_broker_token_refreshes_total")).toEqual({
      "provider=sandbox,result=success": 1,
      "provider=sandbox,result=integration_needs_reauth": 1,
    });
    expect(series(samples, "oauth_broker_token_refresh_seconds_count")).toEqual({ "provider=sandbox": 2 });
  });

  it("counts every HTTP request to the provider by endpoint and status", () => {
    // Discovery once (lazily, at StartAuthorization); the code exchange and the forced refresh
    // at the token endpoint; the replayed refresh token refused with 400 invalid_grant.
    expect(series(samples, "oauth_broker_provider_http_requests_total")).toEqual({
      "endpoint=discovery,provider=sandbox,status=200": 1,
      "endpoint=token,provider=sandbox,status=200": 2,
      "endpoint=token,provider=sandbox,status=400": 1,
    });
    expect(series(samples, "oauth_broker_provider_http_request_duration_seconds_count")).toEqual({
      "endpoint=discovery,provider=sandbox": 1,
      "endpoint=token,provider=sandbox": 3,
    });
  });

  it("counts key service calls by operation and result", () => {
    // Encrypt: the PKCE verifier at StartAuthorization, the first token set at the callback, the
    // refreshed set. Decrypt: the verifier at the callback, the first GetAccessToken (a cache
    // miss), and the stored set before each of the two refreshes.
    expect(series(samples, "oauth_broker_key_service_requests_total")).toEqual({
      "operation=encrypt,result=success": 3,
      "operation=decrypt,result=success": 4,
    });
    expect(series(samples, "oauth_broker_key_service_request_duration_seconds_count")).toEqual({
      "operation=encrypt": 3,
      "operation=decrypt": 4,
    });
  });

  it("reports integrations by provider and status from PostgreSQL", () => {
    expect(series(samples, "oauth_broker_integrations")).toEqual({
      "provider=sandbox,status=active": 0,
      "provider=sandbox,status=needs_reauth": 1,
      "provider=sandbox,status=deleted": 0,
    });
    // The one integration is marked for re-authorization, so no active one lacks a refresh token.
    expect(series(samples, "oauth_broker_integrations_without_refresh_token")).toEqual({ "provider=sandbox": 0 });
  });

  it("reports lease waits, audit health, and no circuit change", () => {
    expect(series(samples, "oauth_broker_refresh_lease_waits_total")).toEqual({ "": 0 });
    expect(series(samples, "oauth_broker_audit_write_failures_total")).toEqual({ "": 0 });
    expect(series(samples, "oauth_broker_audit_chain_intact")).toEqual({ "": 1 });
    // A refused grant proves the provider is up: the breaker stays closed and reports nothing.
    expect(series(samples, "oauth_broker_provider_circuit_open")).toEqual({});
    expect(series(samples, "oauth_broker_provider_circuit_state")).toEqual({});
  });

  it("declares every broker metric family with its type", () => {
    const families = declaredFamilies(exposition);
    expect(Object.fromEntries([...families].filter(([name]) => name.startsWith("oauth_broker_") || name.startsWith("grpc_")))).toEqual({
      grpc_server_started_total: "counter",
      grpc_server_handled_total: "counter",
      grpc_server_handling_seconds: "histogram",
      oauth_broker_token_cache_requests_total: "counter",
      oauth_broker_token_refreshes_total: "counter",
      oauth_broker_token_refresh_seconds: "histogram",
      oauth_broker_refresh_lease_waits_total: "counter",
      oauth_broker_provider_pauses_total: "counter",
      oauth_broker_provider_circuit_open: "gauge",
      oauth_broker_provider_circuit_state: "gauge",
      oauth_broker_provider_http_requests_total: "counter",
      oauth_broker_provider_http_request_duration_seconds: "histogram",
      oauth_broker_key_service_requests_total: "counter",
      oauth_broker_key_service_request_duration_seconds: "histogram",
      oauth_broker_integrations: "gauge",
      oauth_broker_integrations_without_refresh_token: "gauge",
      oauth_broker_audit_write_failures_total: "counter",
      oauth_broker_audit_chain_intact: "gauge",
      oauth_broker_inflight_oldest_seconds: "gauge",
      oauth_broker_inflight_overdue_calls: "gauge",
    });
  });

  it("carries no token, key, user id or integration id, in any label or value", () => {
    expect(secrets.length).toBeGreaterThanOrEqual(9);
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(8);
      expect(exposition, `the exposition contains ${secret.slice(0, 12)}…`).not.toContain(secret);
    }
    const labelValues = new Set(samples.flatMap((sample) => Object.values(sample.labels)));
    for (const value of labelValues) expect(value).not.toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-/);
  });

  it("logs no failure of its own collectors", () => {
    expect(log.text()).not.toContain("could not count integrations");
  });
});
