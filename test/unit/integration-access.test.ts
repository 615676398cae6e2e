/**
 * The order of the integration access checks (domain/integration-access.ts), with the real policy
 * and in-memory lookups: refusals that depend on the caller alone come before any lookup, and an
 * integration the caller may not use answers exactly like a missing one.
 */
import { describe, expect, it } from "vitest";
import { BrokerError } from "../../src/domain/errors.js";
import { createIntegrationAccess, type TokenIntegrationRequest } from "../../src/domain/integration-access.js";
import { createPolicy, createPolicyHolder, hiddenDenialOf, type ServiceRule } from "../../src/domain/policy.js";
import type { TokenSelector } from "../../src/domain/tokens/integration-resolution.js";
import type { Integration, Principal } from "../../src/domain/types.js";

function rule(service: string, overrides: Partial<ServiceRule> = {}): ServiceRule {
  return { service, providers: ["google"], scopes: ["calendar.read"], actForUsers: true, operations: [], strict: false, ...overrides };
}

const policy = createPolicyHolder(
  createPolicy({
    policies: [rule("billing"), rule("strict-billing", { strict: true }), rule("reader", { actForUsers: false })],
  }),
);
const access = createIntegrationAccess(policy);

const alice: Principal = { kind: "user", subject: "alice", issuer: "product" };
const admin: Principal = { kind: "admin", subject: "ops", issuer: "product" };
const billing: Principal = { kind: "service", subject: "billing", issuer: "k8s" };
const strictBilling: Principal = { kind: "service", subject: "strict-billing", issuer: "k8s" };
const reader: Principal = { kind: "service", subject: "reader", issuer: "k8s" };

function integration(id: string, userId: string, provider: string, grantedScopes: readonly string[] = ["calendar.read"]): Integration {
  return {
    id,
    userId,
    provider,
    externalAccount: { id: `${userId}-account`, name: userId, attributes: {} },
    grantedScopes,
    status: "active",
    statusReason: "",
    createdAt: new Date(0),
    updatedAt: new Date(0),
    lastRefreshedAt: null,
    lastUsedAt: null,
    accessTokenExpiresAt: null,
    refreshFailureCount: 0,
    hasRefreshToken: true,
  };
}

const alicesGoogle = integration("6f1c2a4e-0d8b-4c39-9a51-2b7e8f0c1d23", "alice", "google");
const bobsGoogle = integration("0b8e4d2c-6a1f-4f3e-8c2d-9e7a5b3c1d40", "bob", "google", ["calendar.read", "drive"]);
const bobsNotion = integration("a3d5c7e9-1b2f-4a6c-8e0d-2f4b6d8a0c12", "bob", "notion");
const MISSING = "11111111-2222-4333-8444-555555555555";

/** An in-memory store that records which ids were looked up. */
function memoryIntegrations() {
  const byId = new Map([alicesGoogle, bobsGoogle, bobsNotion].map((found) => [found.id, found]));
  const lookedUp: string[] = [];
  const resolved: TokenSelector[] = [];
  return {
    lookedUp,
    resolved,
    find: async (id: string) => {
      lookedUp.push(id);
      return byId.get(id);
    },
    tokens: {
      // As the token service does: `authorize` sees the integration before its state is checked.
      async resolve(selector: TokenSelector, authorize?: (found: Integration) => void): Promise<Integration> {
        resolved.push(selector);
        const found =
          selector.integrationId !== undefined
            ? byId.get(selector.integrationId)
            : [...byId.values()].find((candidate) => candidate.userId === selector.userId && candidate.provider === selector.provider);
        if (found === undefined) throw new BrokerError("not_found", "integration not found", { reason: "INTEGRATION_NOT_FOUND" });
        authorize?.(found);
        return found;
      },
    },
  };
}

async function refusal(promise: Promise<unknown>): Promise<BrokerError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(BrokerError);
  return error as BrokerError;
}

function refusalOf(fn: () => unknown): BrokerError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(BrokerError);
    return error as BrokerError;
  }
  throw new Error("expected a BrokerError, nothing was thrown");
}

describe("one integration (GetIntegration, RefreshIntegration, DeleteIntegration)", () => {
  it("hands a user its own integration", async () => {
    const store = memoryIntegrations();
    await expect(access.one(alice, alicesGoogle.id, store.find)).resolves.toBe(alicesGoogle);
    expect(store.lookedUp).toEqual([alicesGoogle.id]);
  });

  it("answers another user's integration exactly like a missing id", async () => {
    const store = memoryIntegrations();
    const others = await refusal(access.one(alice, bobsGoogle.id, store.find));
    const missing = await refusal(access.one(alice, MISSING, store.find));
    expect([others.code, others.reason]).toEqual(["not_found", "INTEGRATION_NOT_FOUND"]);
    expect([missing.code, missing.reason]).toEqual(["not_found", "INTEGRATION_NOT_FOUND"]);
    expect(others.message).toBe(`integration ${bobsGoogle.id} not found`);
    expect(missing.message).toBe(`integration ${MISSING} not found`);
  });

  it("hides from a service the integrations of providers outside its policy", async () => {
    const store = memoryIntegrations();
    await expect(access.one(billing, bobsGoogle.id, store.find)).resolves.toBe(bobsGoogle);
    const hidden = await refusal(access.one(billing, bobsNotion.id, store.find));
    expect([hidden.code, hidden.reason]).toEqual(["not_found", "INTEGRATION_NOT_FOUND"]);
  });

  it("refuses a service that may not act for users before validating or looking up the id", async () => {
    const store = memoryIntegrations();
    for (const id of [bobsGoogle.id, "not-a-uuid"]) {
      const error = await refusal(access.one(reader, id, store.find));
      expect([error.code, error.reason]).toEqual(["permission_denied", "CANNOT_ACT_FOR_USERS"]);
    }
    expect(store.lookedUp).toEqual([]);
  });

  it("refuses an id that is not a UUID without looking it up", async () => {
    const store = memoryIntegrations();
    const error = await refusal(access.one(admin, "42", store.find));
    expect(error.code).toBe("invalid_argument");
    expect(error.fieldViolations.map((violation) => violation.field)).toEqual(["id"]);
    expect(store.lookedUp).toEqual([]);
  });
});

describe("scopes of list, watch and sync", () => {
  it("narrows a user to itself and a service to its providers", () => {
    expect(access.scope(alice, "", "list_integrations")).toEqual({ userId: "alice", providers: undefined });
    expect(access.scope(billing, "bob", "watch_integrations")).toEqual({ userId: "bob", providers: ["google"] });
    expect(access.scope(admin, "", "list_integrations")).toEqual({ userId: undefined, providers: undefined });
  });

  it("refuses a user reading another user's integrations", () => {
    const error = refusalOf(() => access.scope(alice, "bob", "list_integrations"));
    expect([error.code, error.reason]).toEqual(["permission_denied", "CANNOT_ACT_FOR_OTHER_USER"]);
  });

  it("lets only an admin sync every user at once", () => {
    expect(access.syncScope(admin, "")).toEqual({ userId: undefined, providers: undefined });
    expect(access.syncScope(billing, "bob")).toEqual({ userId: "bob", providers: ["google"] });
    const error = refusalOf(() => access.syncScope(billing, ""));
    expect(error.code).toBe("invalid_argument");
    expect(error.fieldViolations.map((violation) => violation.field)).toEqual(["user_id"]);
    expect(error.message).toContain("only admins sync every user");
  });

  it("reads the policy at each call, so a reload narrows a running watch", () => {
    const holder = createPolicyHolder(createPolicy({ policies: [rule("billing", { providers: ["google", "notion"] })] }));
    const reloadable = createIntegrationAccess(holder);
    expect(reloadable.scope(billing, "bob", "watch_integrations").providers).toEqual(["google", "notion"]);
    holder.replace(createPolicy({ policies: [rule("billing")] }));
    expect(reloadable.scope(billing, "bob", "watch_integrations").providers).toEqual(["google"]);
  });
});

describe("GetAccessToken's integration", () => {
  const byUser = (userId: string, provider: string): TokenIntegrationRequest => ({ userId, provider, externalAccountId: "" });

  it("resolves by id or by user and provider within the caller's policy", async () => {
    const store = memoryIntegrations();
    await expect(access.tokenIntegration(billing, { integrationId: bobsGoogle.id }, ["calendar.read"], store.tokens)).resolves.toBe(bobsGoogle);
    await expect(access.tokenIntegration(billing, byUser("bob", "google"), ["calendar.read"], store.tokens)).resolves.toBe(bobsGoogle);
    expect(store.resolved).toEqual([{ integrationId: bobsGoogle.id }, { userId: "bob", provider: "google", externalAccountId: "" }]);
  });

  it("refuses a service that may not act for users before resolving anything", async () => {
    const store = memoryIntegrations();
    const error = await refusal(access.tokenIntegration(reader, { integrationId: bobsGoogle.id }, [], store.tokens));
    expect([error.code, error.reason]).toEqual(["permission_denied", "CANNOT_ACT_FOR_USERS"]);
    expect(store.resolved).toEqual([]);
  });

  it("answers an id outside the caller's policy like a missing one, keeping the real reason for the audit trail", async () => {
    const store = memoryIntegrations();
    const error = await refusal(access.tokenIntegration(billing, { integrationId: bobsNotion.id }, [], store.tokens));
    expect([error.code, error.reason, error.message]).toEqual(["not_found", "INTEGRATION_NOT_FOUND", `integration ${bobsNotion.id} not found`]);
    expect(hiddenDenialOf(error)?.reason).toBe("INTEGRATION_NOT_ACCESSIBLE");
  });

  it("refuses a provider outside a service's policy before resolving by user", async () => {
    const store = memoryIntegrations();
    const error = await refusal(access.tokenIntegration(billing, byUser("bob", "notion"), [], store.tokens));
    expect([error.code, error.reason]).toEqual(["permission_denied", "PROVIDER_NOT_ALLOWED"]);
    expect(store.resolved).toEqual([]);
  });

  it("checks required and granted scopes once the integration is found", async () => {
    const store = memoryIntegrations();
    const notAllowed = await refusal(access.tokenIntegration(billing, byUser("bob", "google"), ["drive"], store.tokens));
    expect([notAllowed.code, notAllowed.reason]).toEqual(["permission_denied", "SCOPE_NOT_ALLOWED"]);
    const exceeds = await refusal(access.tokenIntegration(strictBilling, byUser("bob", "google"), ["calendar.read"], store.tokens));
    expect([exceeds.code, exceeds.reason]).toEqual(["permission_denied", "GRANT_EXCEEDS_POLICY"]);
    expect(store.resolved).toHaveLength(2);
  });
});
