/**
 * Refused calls in the audit trail, on the real listeners and a real PostgreSQL: every
 * authentication failure, policy denial (including the one a caller sees as NOT_FOUND) and
 * rate-limit rejection leaves exactly one event with the request id, the caller when known and
 * the peer — never the token — and a flood of identical failures is coalesced into a count.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { SignJWT, generateKeyPair } from "jose";
import { createAuthenticator } from "../../src/auth/authenticator.js";
import { LOCAL_AUDIENCE, LOCAL_ISSUER, loadOrCreateLocalSigningKey, signLocalToken, type LocalSigningKey } from "../../src/auth/local-signing-key.js";
import type { Config } from "../../src/config/types.js";
import { createIntegrationAccess } from "../../src/domain/integration-access.js";
import { createPolicyHolder } from "../../src/domain/policy.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { createSecurityAuditRecorder, type SecurityAuditRecorder } from "../../src/observability/security-audit.js";
import { createPostgresAuditLog, type PostgresAuditLog } from "../../src/storage/audit-log.js";
import type { AuditEventRow } from "../../src/storage/audit-hash.js";
import { bindService } from "../../src/transport/service-binding.js";
import { createIntegrationServiceHandlers } from "../../src/transport/handlers/integration-service.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { captureLogger, type CapturedLog } from "../support/log-capture.js";
import { GENEROUS_LIMITS, startTransportFixture, succeedingImpl, type TransportFixture } from "../support/transport-fixture.js";

const BOBS_INTEGRATION = "7b0c2a4e-1f3d-4c5b-9a8e-0d1c2b3a4f5e";
const MISSING_INTEGRATION = "00000000-0000-4000-8000-000000000000";

/** A stand-in for a collaborator the calls here never reach: touching it fails the test. */
function unreachable<T>(what: string): T {
  return new Proxy({}, { get: (_target, property) => { throw new Error(`${what}.${String(property)} is not reached by these calls`); } }) as T;
}

let db: TestDatabase;
let dataDir: string;
let key: LocalSigningKey;
const tokens = { alice: "", billing: "", expired: "", wrongKey: "", foreignIssuer: "", tenYears: "", futureIssued: "" };

beforeAll(async () => {
  db = await createTestDatabase();
  dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-security-audit-"));
  key = await loadOrCreateLocalSigningKey(dataDir);
  await createIntegrationRepository(db.sql).upsertWithTokens({
    id: BOBS_INTEGRATION,
    userId: "bob",
    provider: "google",
    externalAccount: { id: "bob-google", name: "Bob", attributes: {} },
    grantedScopes: ["openid"],
    tokens: { accessTokenCiphertext: "local:v1:access", refreshTokenCiphertext: null, tokenType: "Bearer", expiresAt: new Date(Date.now() + 3_600_000), scopes: ["openid"] },
  });
  tokens.alice = await signLocalToken(key, { subject: "alice", kind: "user" });
  tokens.billing = await signLocalToken(key, { subject: "billing", kind: "service" });
  tokens.expired = await signLocalToken(key, { subject: "alice", kind: "user", ttlSeconds: 1, now: new Date(Date.now() - 3_600_000) });
  const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const forged = (issuer: string) =>
    new SignJWT({ kind: "user" })
      .setProtectedHeader({ alg: "EdDSA", kid: key.kid })
      .setIssuer(issuer)
      .setAudience(LOCAL_AUDIENCE)
      .setSubject("mallory")
      .setExpirationTime("10m")
      .sign(privateKey);
  tokens.wrongKey = await forged(LOCAL_ISSUER);
  // Correctly signed by the broker's own key, but valid for ten years.
  tokens.tenYears = await new SignJWT({ kind: "service" })
    .setProtectedHeader({ alg: "EdDSA", kid: key.kid })
    .setIssuer(LOCAL_ISSUER)
    .setAudience(LOCAL_AUDIENCE)
    .setSubject("billing")
    .setIssuedAt()
    .setExpirationTime("3650d")
    .sign(key.privateKey);
  tokens.foreignIssuer = await forged("https://issuer.attacker.example");
  // Ten years too, but claiming to be issued a minute before it expires: exp − iat alone says 60 s.
  const tenYearsAhead = Math.floor(Date.now() / 1000) + 10 * 365 * 86_400;
  tokens.futureIssued = await new SignJWT({ kind: "service" })
    .setProtectedHeader({ alg: "EdDSA", kid: key.kid })
    .setIssuer(LOCAL_ISSUER)
    .setAudience(LOCAL_AUDIENCE)
    .setSubject("billing")
    .setIssuedAt(tenYearsAhead - 60)
    .setExpirationTime(tenYearsAhead)
    .sign(key.privateKey);
});

afterAll(async () => {
  await db?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

let fixture: TransportFixture | undefined;
let recorder: SecurityAuditRecorder;
let audit: PostgresAuditLog;
/** What the authenticator and the recorder logged in the current test. */
let log: CapturedLog;

async function start(limits: Config["limits"] = GENEROUS_LIMITS): Promise<TransportFixture> {
  const captured = captureLogger();
  const logger = captured.logger;
  log = captured.log;
  audit = createPostgresAuditLog({ sql: db.sql, logger });
  // No timer: the tests end windows themselves with `flush` (as shutdown does). Whatever a window
  // still counted is written then, so the rows read after it are final.
  recorder = createSecurityAuditRecorder({ audit, logger, sweep: false });
  const policyHolder = createPolicyHolder(createRpcPolicy({ providers: [], policies: [] }));
  // The real handler over the real repository: GetIntegration looks the integration up, then
  // lets the access rules decide; the other RPCs' collaborators are never reached here.
  const integrations = createIntegrationServiceHandlers({
    integrations: createIntegrationRepository(db.sql),
    access: createIntegrationAccess(policyHolder),
    tokenService: unreachable("tokenService"),
    deletion: unreachable("deletion"),
    sync: unreachable("sync"),
    changes: unreachable("changes"),
  });
  fixture = await startTransportFixture({
    bindings: [
      bindService(ProviderService, succeedingImpl(ProviderService)),
      bindService(StatusService, succeedingImpl(StatusService)),
      bindService(IntegrationService, integrations),
    ],
    authentication: { authenticator: createAuthenticator({ issuers: [], localKey: key, logger }), policyHolder },
    securityAudit: recorder,
    limits,
  });
  return fixture;
}

beforeEach(async () => {
  await db.sql`truncate audit_events, audit_anchor`;
});

afterEach(async () => {
  await recorder?.close();
  await audit?.close();
  await fixture?.close();
  fixture = undefined;
});

async function rows(): Promise<AuditEventRow[]> {
  return db.sql<AuditEventRow[]>`
    select sequence::text as sequence, time, action, outcome, reason, caller, caller_kind, user_id, integration_id,
           provider, request_id, peer, scopes, details, previous_hash, hash
      from audit_events order by audit_events.sequence`;
}

function connectCall(
  running: TransportFixture,
  service: "providers" | "status" | "integrations",
  requestId: string,
  token: string | undefined,
  id = "",
): Promise<Code> {
  const transport = createConnectTransport({ baseUrl: running.httpUrl, httpVersion: "1.1" });
  const headers: Record<string, string> = { "x-request-id": requestId };
  if (token !== undefined) headers["authorization"] = `Bearer ${token}`;
  const call =
    service === "providers"
      ? createClient(ProviderService, transport).listProviders({}, { headers })
      : service === "status"
        ? createClient(StatusService, transport).getStatus({}, { headers })
        : createClient(IntegrationService, transport).getIntegration({ id }, { headers });
  return (call as Promise<unknown>).then(
    () => Code.Unknown - Code.Unknown,
    (error: unknown) => ConnectError.from(error).code,
  );
}

/** ListProviders or GetStatus over gRPC: the failure, or undefined when the call is answered. */
async function grpcCall(running: TransportFixture, rpc: "providers" | "status", requestId: string, token: string): Promise<GrpcFailure | undefined> {
  const grpc = grpcClient(running.grpcAddress);
  const options = { metadata: { authorization: `Bearer ${token}`, "x-request-id": requestId } };
  const call = rpc === "providers" ? unary(grpc, ProviderService.method.listProviders, {}, options) : unary(grpc, StatusService.method.getStatus, {}, options);
  return (call as Promise<unknown>)
    .then(
      () => undefined,
      (error: unknown) => error as GrpcFailure,
    )
    .finally(() => grpc.close());
}

describe("audit events for refused calls", () => {
  it("records each authentication failure once, with its reason, request id and peer, never the token", async () => {
    const running = await start();
    const attempts: Array<[string, string | undefined, string]> = [
      ["req-auth-missing", undefined, "missing_credentials"],
      ["req-auth-expired", tokens.expired, "expired"],
      ["req-auth-signature", tokens.wrongKey, "bad_signature"],
      ["req-auth-issuer", tokens.foreignIssuer, "unknown_issuer"],
      ["req-auth-malformed", "not-a-jwt", "malformed"],
    ];
    for (const [requestId, token] of attempts) {
      expect(await connectCall(running, "providers", requestId, token)).toBe(Code.Unauthenticated);
    }
    await recorder.flush();

    const stored = await rows();
    expect(stored).toHaveLength(attempts.length);
    attempts.forEach(([requestId, , reason], index) => {
      expect(stored[index]).toMatchObject({
        action: "auth.failed",
        outcome: "failure",
        reason,
        caller: "",
        caller_kind: "",
        request_id: requestId,
        details: { rpc: "oauthbroker.v1.ProviderService/ListProviders", protocol: "connect", count: "1" },
      });
      expect(stored[index]?.peer).toMatch(/^(::ffff:)?127\.0\.0\.1:\d+$/);
    });
    const everything = JSON.stringify(stored);
    for (const token of [tokens.expired, tokens.wrongKey, tokens.foreignIssuer]) {
      expect(everything).not.toContain(token);
      // Not even the signature part alone.
      expect(everything).not.toContain(token.split(".")[2]);
    }
  });

  it("refuses a validly signed token that lives ten years on both listeners, generically, with the reason in log and audit", async () => {
    const running = await start();
    const transport = createConnectTransport({ baseUrl: running.httpUrl, httpVersion: "1.1" });
    const connectError = await createClient(ProviderService, transport)
      .listProviders({}, { headers: { authorization: `Bearer ${tokens.tenYears}`, "x-request-id": "req-lifetime-connect" } })
      .then(
        () => undefined,
        (error: unknown) => ConnectError.from(error),
      );
    expect(connectError?.code).toBe(Code.Unauthenticated);
    expect(connectError?.rawMessage).toBe("missing or invalid credentials");
    const failure = await grpcCall(running, "providers", "req-lifetime-grpc", tokens.tenYears);
    expect(failure?.code).toBe(Code.Unauthenticated);
    expect(failure?.details).toBe("missing or invalid credentials");
    await recorder.flush();

    const stored = await rows();
    expect(stored.map((row) => [row.action, row.reason, row.request_id, row.details["protocol"]])).toEqual([
      ["auth.failed", "lifetime_too_long", "req-lifetime-connect", "connect"],
      ["auth.failed", "lifetime_too_long", "req-lifetime-grpc", "grpc"],
    ]);
    const refusals = log.lines.filter((line) => line["msg"] === "authentication failed");
    expect(refusals).toHaveLength(2);
    for (const line of refusals) {
      expect(line).toMatchObject({ failure: "lifetime_too_long" });
      expect(String(line["reason"])).toMatch(/exp - iat = 3153600\d\d s exceeds the issuer's 86400 s/);
    }
    expect(log.text()).not.toContain(tokens.tenYears.split(".")[2]);
    expect(JSON.stringify(stored)).not.toContain(tokens.tenYears.split(".")[2]);
  });

  it("refuses a ten-year token whose iat claims it was issued a minute before expiry, on both listeners", async () => {
    const running = await start();
    expect(await connectCall(running, "providers", "req-future-iat-connect", tokens.futureIssued)).toBe(Code.Unauthenticated);
    const failure = await grpcCall(running, "providers", "req-future-iat-grpc", tokens.futureIssued);
    expect(failure?.code).toBe(Code.Unauthenticated);
    expect(failure?.details).toBe("missing or invalid credentials");
    await recorder.flush();
    const stored = await rows();
    expect(stored.map((row) => [row.action, row.reason, row.request_id])).toEqual([
      ["auth.failed", "not_yet_valid", "req-future-iat-connect"],
      ["auth.failed", "not_yet_valid", "req-future-iat-grpc"],
    ]);
    const refusals = log.lines.filter((line) => line["msg"] === "authentication failed");
    expect(refusals.map((line) => String(line["reason"]))).toEqual([
      expect.stringMatching(/token issued \d+ s in the future/),
      expect.stringMatching(/token issued \d+ s in the future/),
    ]);
  });

  it("records a policy denial once, with caller, rpc and reason, on both listeners", async () => {
    const running = await start();
    expect(await connectCall(running, "status", "req-deny-connect", tokens.alice)).toBe(Code.PermissionDenied);
    expect((await grpcCall(running, "status", "req-deny-grpc", tokens.billing))?.code).toBe(Code.PermissionDenied);
    // Allowed calls leave nothing.
    expect(await connectCall(running, "providers", "req-allowed", tokens.alice)).toBe(0);
    await recorder.flush();

    const stored = await rows();
    expect(stored).toHaveLength(2);
    for (const [row, requestId, protocol, caller, callerKind] of [
      [stored[0], "req-deny-connect", "connect", "alice", "user"],
      [stored[1], "req-deny-grpc", "grpc", "billing", "service"],
    ] as const) {
      expect(row).toMatchObject({
        action: "policy.denied",
        outcome: "denied",
        reason: "RPC_NOT_ALLOWED",
        caller,
        caller_kind: callerKind,
        request_id: requestId,
        details: { rpc: "oauthbroker.v1.StatusService/GetStatus", protocol, count: "1" },
      });
      expect(row?.peer).toMatch(/127\.0\.0\.1:\d+$/);
    }
    expect(JSON.stringify(stored)).not.toContain(tokens.alice);
    expect(JSON.stringify(stored)).not.toContain(tokens.billing);
  });

  it("records another user's integration as a denial while the caller sees NOT_FOUND, and a missing one not at all", async () => {
    const running = await start();
    const transport = createConnectTransport({ baseUrl: running.httpUrl, httpVersion: "1.1" });
    const client = createClient(IntegrationService, transport);
    const headers = (requestId: string) => ({ authorization: `Bearer ${tokens.alice}`, "x-request-id": requestId });
    const hidden = await client.getIntegration({ id: BOBS_INTEGRATION }, { headers: headers("req-hidden") }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    const missing = await client.getIntegration({ id: MISSING_INTEGRATION }, { headers: headers("req-missing") }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    // Indistinguishable answers: same code, same message shape, same details.
    expect(hidden?.code).toBe(Code.NotFound);
    expect(missing?.code).toBe(Code.NotFound);
    expect(hidden?.rawMessage).toBe(`integration ${BOBS_INTEGRATION} not found`);
    expect(hidden?.details.length).toBe(missing?.details.length);
    await recorder.flush();

    const stored = await rows();
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      action: "policy.denied",
      outcome: "denied",
      reason: "OTHER_USERS_INTEGRATION",
      caller: "alice",
      caller_kind: "user",
      integration_id: BOBS_INTEGRATION,
      request_id: "req-hidden",
      details: { rpc: "oauthbroker.v1.IntegrationService/GetIntegration", visible_as: "NOT_FOUND", count: "1" },
    });
  });

  it("records a rate-limit rejection once, naming the limit", async () => {
    const tight = { ratePerSecond: 0.001, burst: 1 };
    const running = await start({ ...GENEROUS_LIMITS, perPrincipal: { ...GENEROUS_LIMITS.perPrincipal, read: tight } });
    expect(await connectCall(running, "providers", "req-limit-1", tokens.billing)).toBe(0);
    expect(await connectCall(running, "providers", "req-limit-2", tokens.billing)).toBe(Code.ResourceExhausted);
    await recorder.flush();
    const stored = await rows();
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      action: "rate_limit.exceeded",
      outcome: "denied",
      reason: "read",
      caller: "billing",
      caller_kind: "service",
      request_id: "req-limit-2",
      details: { rpc: "oauthbroker.v1.ProviderService/ListProviders", count: "1" },
    });
  });

  it("coalesces a flood of identical failures from one peer into a first event and one counted event", async () => {
    const running = await start();
    const flood = 25;
    for (let i = 0; i < flood; i++) {
      expect(await connectCall(running, "providers", `req-flood-${i}`, tokens.expired)).toBe(Code.Unauthenticated);
    }
    // A different failure from the same peer is a different kind: recorded on its own.
    expect(await connectCall(running, "providers", "req-other", tokens.wrongKey)).toBe(Code.Unauthenticated);
    await recorder.settle();
    expect((await rows()).map((row) => [row.reason, row.details["count"]])).toEqual([
      ["expired", "1"],
      ["bad_signature", "1"],
    ]);

    // The window ends (here: flushed, as at shutdown): the repeats become one counted event.
    await recorder.flush();
    const stored = await rows();
    expect(stored).toHaveLength(3);
    expect(stored[2]).toMatchObject({
      action: "auth.failed",
      outcome: "failure",
      reason: "expired",
      request_id: `req-flood-${flood - 1}`,
      details: {
        rpc: "oauthbroker.v1.ProviderService/ListProviders",
        count: String(flood - 1),
        coalesced: "true",
        first_request_id: "req-flood-1",
        last_request_id: `req-flood-${flood - 1}`,
      },
    });
    expect(JSON.stringify(stored)).not.toContain(tokens.expired);
  });
});
