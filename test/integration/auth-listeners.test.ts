/**
 * Callers on the real listeners: every RPC of the six services × every role, over gRPC
 * (grpc-js) and over Connect on the HTTP listener, plus forged credentials. Handlers are
 * stubs that succeed: what is asserted is who gets past authentication and policy.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { SignJWT, generateKeyPair } from "jose";
import { createAuthenticator } from "../../src/auth/authenticator.js";
import { loadOrCreateLocalSigningKey, signLocalToken, LOCAL_AUDIENCE, LOCAL_ISSUER, type LocalSigningKey } from "../../src/auth/local-signing-key.js";
import { createPolicyHolder } from "../../src/domain/policy.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import { AuditService } from "../../src/gen/oauthbroker/v1/audit_service_pb.js";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.js";
import { createLogger } from "../../src/observability/logger.js";
import { bindService } from "../../src/transport/service-binding.js";
import type { ProviderConfig } from "../../src/config/types.js";
import { startTransportFixture, succeedingImpl, type TransportFixture } from "../support/transport-fixture.js";
import { grpcClient, serverStream, unary, type GrpcFailure } from "../support/grpc-client.js";

const SERVICES: DescService[] = [TokenService, AuthorizationService, IntegrationService, ProviderService, StatusService, AuditService];

const google: ProviderConfig = {
  id: "google",
  kind: "google",
  displayName: "Google",
  clientId: "id",
  clientSecret: undefined,
  clientAuthMethod: "client_secret_post",
  endpoints: {},
  defaultScopes: ["openid"],
  allowedScopes: ["openid", "email"],
  pkce: true,
  authorizationParams: {},
  defaultAccessTokenLifetimeSeconds: 3600,
  tenant: undefined,
  timeoutMs: 1000,
  maxConcurrency: 4,
};

type Role = "user" | "service" | "admin" | "unpoliced";
const ALLOWED: Record<Role, string[]> = {
  user: [
    "AuthorizationService/StartAuthorization",
    "AuthorizationService/CompleteAuthorization",
    "IntegrationService/ListIntegrations",
    "IntegrationService/GetIntegration",
    "IntegrationService/RefreshIntegration",
    "IntegrationService/SyncIntegrations",
    "IntegrationService/DeleteIntegration",
    "IntegrationService/WatchIntegrations",
    "ProviderService/ListProviders",
  ],
  service: [
    "TokenService/GetAccessToken",
    "IntegrationService/ListIntegrations",
    "IntegrationService/GetIntegration",
    "IntegrationService/WatchIntegrations",
    "ProviderService/ListProviders",
    // Added by the service's policy `rpcs`.
    "AuthorizationService/StartAuthorization",
  ],
  admin: SERVICES.flatMap((s) => s.methods.map((m) => `${s.name}/${m.name}`)),
  unpoliced: ["ProviderService/ListProviders"],
};

let dataDir: string;
let key: LocalSigningKey;
let fixture: TransportFixture;
const tokens: Record<Role, string> = { user: "", service: "", admin: "", unpoliced: "" };

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-auth-"));
  key = await loadOrCreateLocalSigningKey(dataDir);
  const logger = createLogger({ level: "silent" });
  const authenticator = createAuthenticator({ issuers: [], localKey: key, logger });
  const policyHolder = createPolicyHolder(
    createRpcPolicy({
      providers: [google],
      policies: [
        { service: "billing", providers: ["google"], scopes: ["*"], actForUsers: true, rpcs: ["AuthorizationService/StartAuthorization"], strict: false },
      ],
    }),
  );
  fixture = await startTransportFixture({
    bindings: SERVICES.map((s) => bindService(s, succeedingImpl(s))),
    authentication: { authenticator, policyHolder },
  });
  tokens.user = await signLocalToken(key, { subject: "alice", kind: "user" });
  tokens.service = await signLocalToken(key, { subject: "billing", kind: "service" });
  tokens.admin = await signLocalToken(key, { subject: "ops", kind: "service", roles: ["admin"] });
  tokens.unpoliced = await signLocalToken(key, { subject: "stranger", kind: "service" });
});

afterAll(async () => {
  await fixture?.close();
  await rm(dataDir, { recursive: true, force: true });
});

async function callGrpc(service: DescService, methodName: string, token: string | undefined): Promise<Code> {
  const client = grpcClient(fixture.grpcAddress);
  const method = service.methods.find((m) => m.name === methodName)!;
  const metadata: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  try {
    if (method.methodKind === "unary") {
      await unary(client, method as never, {}, { metadata });
    } else {
      for await (const _ of serverStream(client, method as never, {}, { metadata }).messages) void _;
    }
    return Code.Unknown - Code.Unknown;
  } catch (error) {
    return (error as GrpcFailure).code as number as Code;
  } finally {
    client.close();
  }
}

async function callConnect(service: DescService, methodName: string, token: string | undefined): Promise<Code> {
  const client = createClient(service, createConnectTransport({ baseUrl: fixture.httpUrl, httpVersion: "1.1" })) as unknown as Record<
    string,
    (req: object, options: object) => unknown
  >;
  const method = service.methods.find((m) => m.name === methodName)!;
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  try {
    const result = client[method.localName]!({}, { headers });
    if (method.methodKind === "unary") await result;
    else for await (const _ of result as AsyncIterable<unknown>) void _;
    return 0 as Code;
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

describe.each([
  ["gRPC listener", callGrpc],
  ["HTTP listener (Connect)", callConnect],
])("%s", (_name, call) => {
  const cases = (["user", "service", "admin", "unpoliced"] as Role[]).flatMap((role) =>
    SERVICES.flatMap((service) => service.methods.map((method) => ({ role, service, method: method.name }))),
  );

  it.each(cases)("$role → $service.name/$method", async ({ role, service, method }) => {
    const allowed = ALLOWED[role].includes(`${service.name}/${method}`);
    expect(await call(service, method, tokens[role])).toBe(allowed ? 0 : Code.PermissionDenied);
  });

  it("refuses anonymous calls to every broker RPC but keeps health open", async () => {
    for (const service of SERVICES) {
      for (const method of service.methods) expect(await call(service, method.name, undefined)).toBe(Code.Unauthenticated);
    }
    expect(await call(Health, "Check", undefined)).toBe(0);
  });

  it("refuses forged and expired credentials with UNAUTHENTICATED", async () => {
    const header = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
    const payload = Buffer.from(
      JSON.stringify({ iss: LOCAL_ISSUER, aud: LOCAL_AUDIENCE, sub: "mallory", kind: "user", roles: ["admin"], exp: Math.floor(Date.now() / 1000) + 600 }),
    ).toString("base64url");
    const algNone = `${header}.${payload}.`;
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const wrongKey = await new SignJWT({ kind: "user", roles: ["admin"] })
      .setProtectedHeader({ alg: "EdDSA", kid: key.kid })
      .setIssuer(LOCAL_ISSUER)
      .setAudience(LOCAL_AUDIENCE)
      .setSubject("mallory")
      .setExpirationTime("10m")
      .sign(privateKey);
    const expired = await signLocalToken(key, { subject: "alice", kind: "user", ttlSeconds: 1, now: new Date(Date.now() - 3_600_000) });
    for (const forged of [algNone, wrongKey, expired, "not-a-jwt"]) {
      expect(await call(ProviderService, "ListProviders", forged)).toBe(Code.Unauthenticated);
    }
  });
});
