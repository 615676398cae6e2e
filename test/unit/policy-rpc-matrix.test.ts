import { describe, it, expect } from "vitest";
import { AuditService } from "../../src/gen/oauthbroker/v1/audit_service_pb.js";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import type { ServicePolicy } from "../../src/config/types.js";
import { BrokerError } from "../../src/domain/errors.js";
import { BROKER_RPCS, rpcMatches } from "../../src/transport/rpc-operations.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import type { Principal } from "../../src/domain/types.js";

const SERVICES = [TokenService, AuthorizationService, IntegrationService, ProviderService, StatusService, AuditService];
const ALL_METHODS = SERVICES.flatMap((service) => service.methods.map((method) => `${service.typeName}/${method.name}`));

type Caller = "user" | "admin" | "service" | "serviceNoPolicy" | "serviceWithStart";
// Written out by hand from the role definitions, independently of the implementation.
const EXPECTED: Record<string, Record<Caller, boolean>> = {
  "oauthbroker.v1.TokenService/GetAccessToken": { user: false, admin: true, service: true, serviceNoPolicy: false, serviceWithStart: true },
  "oauthbroker.v1.AuthorizationService/StartAuthorization": { user: true, admin: true, service: false, serviceNoPolicy: false, serviceWithStart: true },
  "oauthbroker.v1.AuthorizationService/CompleteAuthorization": { user: true, admin: true, service: false, serviceNoPolicy: false, serviceWithStart: false },
  "oauthbroker.v1.IntegrationService/ListIntegrations": { user: true, admin: true, service: true, serviceNoPolicy: false, serviceWithStart: true },
  "oauthbroker.v1.IntegrationService/GetIntegration": { user: true, admin: true, service: true, serviceNoPolicy: false, serviceWithStart: true },
  "oauthbroker.v1.IntegrationService/RefreshIntegration": { user: true, admin: true, service: false, serviceNoPolicy: false, serviceWithStart: false },
  "oauthbroker.v1.IntegrationService/SyncIntegrations": { user: true, admin: true, service: false, serviceNoPolicy: false, serviceWithStart: false },
  "oauthbroker.v1.IntegrationService/DeleteIntegration": { user: true, admin: true, service: false, serviceNoPolicy: false, serviceWithStart: false },
  "oauthbroker.v1.IntegrationService/WatchIntegrations": { user: true, admin: true, service: true, serviceNoPolicy: false, serviceWithStart: true },
  "oauthbroker.v1.ProviderService/ListProviders": { user: true, admin: true, service: true, serviceNoPolicy: true, serviceWithStart: true },
  "oauthbroker.v1.StatusService/GetStatus": { user: false, admin: true, service: false, serviceNoPolicy: false, serviceWithStart: false },
  "oauthbroker.v1.AuditService/ListAuditEvents": { user: false, admin: true, service: false, serviceNoPolicy: false, serviceWithStart: false },
};

function rule(service: string, overrides: Partial<ServicePolicy> = {}): ServicePolicy {
  return { service, providers: ["google"], scopes: ["*"], actForUsers: true, rpcs: [], strict: false, ...overrides };
}

const policy = createRpcPolicy({
  policies: [rule("billing"), rule("onboarding", { rpcs: ["oauthbroker.v1.AuthorizationService/StartAuthorization"] })],
  providers: [],
});

const CALLERS: Record<Caller, Principal> = {
  user: { kind: "user", subject: "alice", issuer: "local" },
  admin: { kind: "admin", subject: "ops", issuer: "local" },
  service: { kind: "service", subject: "billing", issuer: "local" },
  serviceNoPolicy: { kind: "service", subject: "stranger", issuer: "local" },
  serviceWithStart: { kind: "service", subject: "onboarding", issuer: "local" },
};

describe("role × RPC matrix", () => {
  it("covers exactly the RPCs of the six generated services", () => {
    expect(ALL_METHODS.length).toBeGreaterThanOrEqual(12);
    expect([...BROKER_RPCS].sort()).toEqual([...ALL_METHODS].sort());
    expect(Object.keys(EXPECTED).sort()).toEqual([...ALL_METHODS].sort());
  });

  for (const method of ALL_METHODS) {
    for (const caller of Object.keys(CALLERS) as Caller[]) {
      const allowed = EXPECTED[method]?.[caller];
      it(`${caller} ${allowed ? "may" : "may not"} call ${method}`, () => {
        const principal = CALLERS[caller];
        if (allowed) {
          expect(() => policy.authorizeRpc(principal, method)).not.toThrow();
          return;
        }
        let caught: unknown;
        try {
          policy.authorizeRpc(principal, method);
        } catch (error) {
          caught = error;
        }
        expect(caught).toBeInstanceOf(BrokerError);
        const error = caught as BrokerError;
        expect(error.code).toBe("permission_denied");
        expect(error.reason).toBe("RPC_NOT_ALLOWED");
        expect(error.metadata).toEqual({ method });
        expect(error.message).toBe(`${principal.subject} (${principal.kind}) may not call ${method}`);
      });
    }
  }

  it("applies a '*' rule to services without their own rule, and an exact rule first", () => {
    const withFallback = createRpcPolicy({
      policies: [rule("*", { rpcs: ["IntegrationService/*"] }), rule("billing")],
      providers: [],
    });
    const stranger: Principal = { kind: "service", subject: "stranger", issuer: "idp" };
    const billing: Principal = { kind: "service", subject: "billing", issuer: "idp" };
    expect(() => withFallback.authorizeRpc(stranger, "oauthbroker.v1.IntegrationService/DeleteIntegration")).not.toThrow();
    expect(() => withFallback.authorizeRpc(billing, "oauthbroker.v1.IntegrationService/DeleteIntegration")).toThrow(
      /may not call/,
    );
  });

  it("users and services may not call unknown methods; admins are not limited by the catalogue", () => {
    expect(() => policy.authorizeRpc(CALLERS.user, "oauthbroker.v1.Secret/Method")).toThrow(/may not call/);
    expect(() => policy.authorizeRpc(CALLERS.service, "oauthbroker.v1.Secret/Method")).toThrow(/may not call/);
    expect(() => policy.authorizeRpc(CALLERS.admin, "oauthbroker.v1.Secret/Method")).not.toThrow();
  });
});

describe("rpcMatches", () => {
  it("matches full names, service wildcards, short names and '*'", () => {
    const method = "oauthbroker.v1.IntegrationService/DeleteIntegration";
    expect(rpcMatches(method, method)).toBe(true);
    expect(rpcMatches("IntegrationService/DeleteIntegration", method)).toBe(true);
    expect(rpcMatches("oauthbroker.v1.IntegrationService/*", method)).toBe(true);
    expect(rpcMatches("IntegrationService/*", method)).toBe(true);
    expect(rpcMatches("*", method)).toBe(true);
    expect(rpcMatches("IntegrationService/Delete", method)).toBe(false);
    expect(rpcMatches("Integration/*", method)).toBe(false);
    expect(rpcMatches("TokenService/*", method)).toBe(false);
    expect(rpcMatches("*", "grpc.health.v1.Health/Check")).toBe(false);
  });
});
