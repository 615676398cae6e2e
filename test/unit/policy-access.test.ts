import { describe, it, expect } from "vitest";
import type { ProviderConfig, ServicePolicy } from "../../src/config/types.js";
import { BrokerError } from "../../src/domain/errors.js";
import { checkRequestedScopes, createPolicyHolder, integrationNotFound, type ActPurpose, type FilterPurpose } from "../../src/domain/policy.js";
import { policyProblems } from "../../src/config/policy-problems.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import type { Principal } from "../../src/domain/types.js";

function provider(id: string, overrides: Partial<ProviderConfig> = {}): ProviderConfig {
  return {
    id,
    kind: "oidc",
    displayName: id,
    clientId: "client",
    clientSecret: undefined,
    clientAuthMethod: "client_secret_basic",
    endpoints: {},
    defaultScopes: ["openid"],
    allowedScopes: ["openid", "email", "calendar.read", "calendar.write", "drive"],
    pkce: true,
    authorizationParams: {},
    defaultAccessTokenLifetimeSeconds: 3600,
    tenant: undefined,
    timeoutMs: 5000,
    maxConcurrency: 10,
    ...overrides,
  };
}

function rule(service: string, overrides: Partial<ServicePolicy> = {}): ServicePolicy {
  return { service, providers: ["google"], scopes: ["calendar.read"], actForUsers: true, rpcs: [], strict: false, ...overrides };
}

const providers = [provider("google"), provider("notion", { defaultScopes: [], allowedScopes: [] })];
const policy = createRpcPolicy({
  policies: [
    rule("billing"),
    rule("strict-billing", { strict: true, scopes: ["openid", "calendar.read"] }),
    rule("any-scope", { providers: ["*"], scopes: ["*"], strict: true }),
    rule("reader", { actForUsers: false }),
  ],
  providers,
});

const alice: Principal = { kind: "user", subject: "alice", issuer: "product" };
const admin: Principal = { kind: "admin", subject: "ops", issuer: "product" };
const billing: Principal = { kind: "service", subject: "billing", issuer: "k8s" };
const strictBilling: Principal = { kind: "service", subject: "strict-billing", issuer: "k8s" };
const anyScope: Principal = { kind: "service", subject: "any-scope", issuer: "k8s" };
const reader: Principal = { kind: "service", subject: "reader", issuer: "k8s" };
const stranger: Principal = { kind: "service", subject: "stranger", issuer: "k8s" };

function errorOf(fn: () => unknown): BrokerError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BrokerError);
    return error as BrokerError;
  }
  throw new Error("expected a BrokerError, nothing was thrown");
}

const ACT: ActPurpose[] = ["start_authorization", "get_access_token"];
const FILTER: FilterPurpose[] = ["list_integrations", "sync_integrations", "watch_integrations"];

type Outcome = string | undefined | { code: string; reason: string };
const denied = (reason: string) => ({ code: "permission_denied", reason });
const missingUser = { code: "invalid_argument", reason: "INVALID_ARGUMENT" };

// principal × requested user id → outcome for acting purposes and for filtering purposes.
const CASES: { name: string; principal: Principal; requested: string; act: Outcome; filter: Outcome }[] = [
  { name: "user, no user_id", principal: alice, requested: "", act: "alice", filter: "alice" },
  { name: "user, itself", principal: alice, requested: "alice", act: "alice", filter: "alice" },
  { name: "user, another user", principal: alice, requested: "bob", act: denied("CANNOT_ACT_FOR_OTHER_USER"), filter: denied("CANNOT_ACT_FOR_OTHER_USER") },
  { name: "admin, no user_id", principal: admin, requested: "", act: missingUser, filter: undefined },
  { name: "admin, a user", principal: admin, requested: "bob", act: "bob", filter: "bob" },
  { name: "service acting for users, no user_id", principal: billing, requested: "", act: missingUser, filter: undefined },
  { name: "service acting for users, a user", principal: billing, requested: "bob", act: "bob", filter: "bob" },
  { name: "service not acting for users, a user", principal: reader, requested: "bob", act: denied("CANNOT_ACT_FOR_USERS"), filter: denied("CANNOT_ACT_FOR_USERS") },
  { name: "service not acting for users, no user_id", principal: reader, requested: "", act: denied("CANNOT_ACT_FOR_USERS"), filter: denied("CANNOT_ACT_FOR_USERS") },
  { name: "service without policy, a user", principal: stranger, requested: "bob", act: denied("CANNOT_ACT_FOR_USERS"), filter: denied("CANNOT_ACT_FOR_USERS") },
];

describe("resolveUser", () => {
  for (const testCase of CASES) {
    for (const purpose of [...ACT, ...FILTER]) {
      const expected = (ACT as string[]).includes(purpose) ? testCase.act : testCase.filter;
      it(`${testCase.name}, ${purpose} → ${JSON.stringify(expected)}`, () => {
        const resolve = () => policy.resolveUser(testCase.principal, testCase.requested, purpose as ActPurpose);
        if (typeof expected === "object") {
          const error = errorOf(resolve);
          expect(error.code).toBe(expected.code);
          expect(error.reason).toBe(expected.reason);
          if (expected.code === "invalid_argument") {
            expect(error.fieldViolations.map((violation) => violation.field)).toEqual(["user_id"]);
            expect(error.message).toMatch(/^user_id: /);
          }
        } else {
          expect(resolve()).toBe(expected);
        }
      });
    }
  }
});

describe("canSeeIntegration and assertCanAccess", () => {
  const matrix: { principal: Principal; owner: string; provider?: string; visible: boolean; error?: { code: string; reason: string } }[] = [
    { principal: alice, owner: "alice", visible: true },
    { principal: alice, owner: "bob", visible: false, error: { code: "not_found", reason: "INTEGRATION_NOT_FOUND" } },
    { principal: alice, owner: "bob", provider: "google", visible: false, error: { code: "not_found", reason: "INTEGRATION_NOT_FOUND" } },
    { principal: admin, owner: "bob", visible: true },
    { principal: admin, owner: "bob", provider: "notion", visible: true },
    { principal: billing, owner: "bob", visible: true },
    { principal: billing, owner: "bob", provider: "google", visible: true },
    { principal: billing, owner: "bob", provider: "notion", visible: false, error: { code: "not_found", reason: "INTEGRATION_NOT_FOUND" } },
    { principal: anyScope, owner: "bob", provider: "notion", visible: true },
    { principal: reader, owner: "bob", provider: "google", visible: false, error: denied("CANNOT_ACT_FOR_USERS") },
    { principal: stranger, owner: "bob", visible: false, error: denied("CANNOT_ACT_FOR_USERS") },
    { principal: stranger, owner: "stranger", visible: false, error: denied("CANNOT_ACT_FOR_USERS") },
  ];
  for (const row of matrix) {
    it(`${row.principal.kind} ${row.principal.subject} on ${row.owner}'s ${row.provider ?? "integration"}: ${row.visible ? "visible" : row.error?.code}`, () => {
      expect(policy.canSeeIntegration(row.principal, row.owner, row.provider)).toBe(row.visible);
      const access = () => policy.assertCanAccess(row.principal, row.owner, { provider: row.provider, integrationId: "int-1" });
      if (row.error === undefined) {
        expect(access).not.toThrow();
      } else {
        const error = errorOf(access);
        expect(error.code).toBe(row.error.code);
        expect(error.reason).toBe(row.error.reason);
      }
    });
  }

  it("answers another user's integration exactly like a missing one", () => {
    const error = errorOf(() => policy.assertCanAccess(alice, "bob", { integrationId: "int-1" }));
    const missing = integrationNotFound("int-1");
    expect({ code: error.code, message: error.message, reason: error.reason, metadata: error.metadata }).toEqual({
      code: missing.code,
      message: missing.message,
      reason: missing.reason,
      metadata: missing.metadata,
    });
    expect(error.message).not.toContain("bob");
  });

  it("lists the providers a caller may see", () => {
    expect(policy.visibleProviders(alice)).toBeUndefined();
    expect(policy.visibleProviders(admin)).toBeUndefined();
    expect(policy.visibleProviders(billing)).toEqual(["google"]);
    expect(policy.visibleProviders(anyScope)).toBeUndefined();
    expect(policy.visibleProviders(stranger)).toEqual([]);
  });
});

describe("checkTokenRequest", () => {
  it("lets a service require scopes its policy lists from its providers", () => {
    expect(() => policy.checkTokenRequest(billing, { provider: "google", requiredScopes: ["calendar.read"] })).not.toThrow();
    expect(() => policy.checkTokenRequest(billing, { provider: "google", requiredScopes: [] })).not.toThrow();
  });

  it("refuses a provider outside the policy", () => {
    const error = errorOf(() => policy.checkTokenRequest(billing, { provider: "notion", requiredScopes: [] }));
    expect(error.code).toBe("permission_denied");
    expect(error.reason).toBe("PROVIDER_NOT_ALLOWED");
    expect(error.metadata).toEqual({ provider: "notion" });
    expect(error.message).toBe("billing (service) may not use provider notion");
  });

  it("refuses a service without policy", () => {
    expect(errorOf(() => policy.checkTokenRequest(stranger, { provider: "google", requiredScopes: [] })).reason).toBe(
      "PROVIDER_NOT_ALLOWED",
    );
  });

  it("names each required scope outside the policy", () => {
    const error = errorOf(() =>
      policy.checkTokenRequest(billing, { provider: "google", requiredScopes: ["calendar.read", "drive", "calendar.write", "drive"] }),
    );
    expect(error.code).toBe("permission_denied");
    expect(error.reason).toBe("SCOPE_NOT_ALLOWED");
    expect(error.metadata).toEqual({ provider: "google", scopes: "drive calendar.write" });
    expect(error.message).toBe("billing (service) may not require scopes drive, calendar.write of provider google");
  });

  it("without strict, hands out grants broader than the policy", () => {
    expect(() =>
      policy.checkTokenRequest(billing, { provider: "google", requiredScopes: ["calendar.read"], grantedScopes: ["calendar.read", "drive"] }),
    ).not.toThrow();
  });

  it("with strict, refuses grants broader than the policy and names the excess", () => {
    expect(() =>
      policy.checkTokenRequest(strictBilling, {
        provider: "google",
        requiredScopes: ["calendar.read"],
        grantedScopes: ["openid", "calendar.read"],
      }),
    ).not.toThrow();
    const error = errorOf(() =>
      policy.checkTokenRequest(strictBilling, {
        provider: "google",
        requiredScopes: ["calendar.read"],
        grantedScopes: ["openid", "calendar.read", "drive"],
      }),
    );
    expect(error.code).toBe("permission_denied");
    expect(error.reason).toBe("GRANT_EXCEEDS_POLICY");
    expect(error.metadata).toEqual({ provider: "google", scopes: "drive" });
    expect(error.message).toContain("scope drive");
    // Before the grant is loaded the strict check is skipped.
    expect(() => policy.checkTokenRequest(strictBilling, { provider: "google", requiredScopes: ["calendar.read"] })).not.toThrow();
  });

  it("'*' scopes allow every scope, strict or not", () => {
    expect(() =>
      policy.checkTokenRequest(anyScope, { provider: "notion", requiredScopes: ["anything"], grantedScopes: ["everything"] }),
    ).not.toThrow();
  });

  it("refuses users and lets admins through", () => {
    const error = errorOf(() => policy.checkTokenRequest(alice, { provider: "google", requiredScopes: [] }));
    expect(error.code).toBe("permission_denied");
    expect(error.reason).toBe("RPC_NOT_ALLOWED");
    expect(() =>
      policy.checkTokenRequest(admin, { provider: "notion", requiredScopes: ["drive"], grantedScopes: ["x"] }),
    ).not.toThrow();
  });

  it("assertProviderAllowed limits services only", () => {
    expect(() => policy.assertProviderAllowed(alice, "notion")).not.toThrow();
    expect(() => policy.assertProviderAllowed(admin, "notion")).not.toThrow();
    expect(() => policy.assertProviderAllowed(billing, "google")).not.toThrow();
    expect(errorOf(() => policy.assertProviderAllowed(billing, "notion")).reason).toBe("PROVIDER_NOT_ALLOWED");
  });
});

describe("checkRequestedScopes", () => {
  const google = provider("google");

  it("accepts allowed and default scopes, and none", () => {
    expect(() => checkRequestedScopes(google, ["openid", "calendar.read"])).not.toThrow();
    expect(() => checkRequestedScopes(google, [])).not.toThrow();
    expect(() => checkRequestedScopes(provider("x", { defaultScopes: ["profile"], allowedScopes: [] }), ["profile"])).not.toThrow();
    expect(() => policy.checkRequestedScopes(google, ["email"])).not.toThrow();
  });

  it("names every scope outside the allowed set, with its field path", () => {
    const error = errorOf(() => checkRequestedScopes(google, ["openid", "admin.directory", "calendar.read", "mail.send"]));
    expect(error.code).toBe("invalid_argument");
    expect(error.fieldViolations.map((violation) => violation.field)).toEqual(["scopes[1]", "scopes[3]"]);
    expect(error.message).toMatch(/^scopes: admin\.directory, mail\.send are not allowed for provider google/);
    expect(error.metadata).toEqual({ provider: "google", scopes: "admin.directory mail.send" });
  });

  it("allows nothing beyond the defaults when no allowed set is configured", () => {
    expect(errorOf(() => checkRequestedScopes(provider("bare", { defaultScopes: [], allowedScopes: [] }), ["a"])).message).toContain(
      "allowed: (none)",
    );
  });
});

describe("policyProblems", () => {
  it("accepts a sound configuration", () => {
    expect(
      policyProblems({
        policies: [rule("billing"), rule("*", { providers: ["*"], scopes: ["*"], rpcs: ["IntegrationService/*"] })],
        providers,
      }),
    ).toEqual([]);
  });

  it("reports every problem", () => {
    const problems = policyProblems({
      policies: [
        rule("billing", { providers: ["google", "gitlab"], scopes: ["calendar.read", "repo"], rpcs: ["TokenService/Nope"] }),
        rule("billing"),
        rule(" "),
      ],
      providers,
    });
    expect(problems).toEqual([
      "policies[0] (billing): unknown provider gitlab",
      expect.stringContaining("policies[0] (billing): rpcs entry TokenService/Nope matches no RPC"),
      "policies[0] (billing): scope repo is not allowed by any of its providers",
      "policies[1] (billing): a second rule for the same service",
      'policies[2] ( ): service must name a service principal or "*"',
    ]);
  });
});

describe("createPolicyHolder", () => {
  it("swaps the whole policy at once; a policy taken before the swap keeps working", () => {
    const before = createRpcPolicy({ policies: [], providers });
    const after = createRpcPolicy({ policies: [rule("billing")], providers });
    const holder = createPolicyHolder(before);
    const inFlight = holder.current();
    expect(() => holder.current().authorizeRpc(billing, "oauthbroker.v1.TokenService/GetAccessToken")).toThrow(/may not call/);
    holder.replace(after);
    expect(() => holder.current().authorizeRpc(billing, "oauthbroker.v1.TokenService/GetAccessToken")).not.toThrow();
    expect(holder.current()).toBe(after);
    expect(() => inFlight.authorizeRpc(billing, "oauthbroker.v1.TokenService/GetAccessToken")).toThrow(/may not call/);
  });
});
