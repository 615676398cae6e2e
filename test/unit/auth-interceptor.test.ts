import { describe, it, expect } from "vitest";
import { createAuthenticationInterceptor, openServiceMatcher } from "../../src/transport/interceptors/authentication.js";
import type { CallContext } from "../../src/transport/call.js";
import { BrokerError } from "../../src/domain/errors.js";
import { createPolicyHolder } from "../../src/domain/policy.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import type { Principal } from "../../src/domain/types.js";

function fakeCall(service: string, method: string, headers: Record<string, string> = {}): CallContext {
  return {
    service,
    method,
    methodKind: "unary",
    protocol: "grpc",
    requestHeader: new Headers(headers),
    responseHeader: new Headers(),
    peer: "127.0.0.1:5555",
    requestId: "req-1",
    principal: undefined,
    signal: new AbortController().signal,
    deadline: undefined,
  };
}

const PRINCIPALS: Record<string, Principal> = {
  "Bearer user": { kind: "user", subject: "alice", issuer: "local" },
  "Bearer service": { kind: "service", subject: "billing", issuer: "local" },
};

function fakeAuthenticator() {
  const seen: (string | null)[] = [];
  return {
    seen,
    async authenticate(header: string | null): Promise<Principal> {
      seen.push(header);
      const principal = header === null ? undefined : PRINCIPALS[header];
      if (principal === undefined) throw new BrokerError("unauthenticated", "missing or invalid credentials");
      return principal;
    },
  };
}

const policyHolder = createPolicyHolder(
  createRpcPolicy({
    policies: [{ service: "billing", providers: ["google"], scopes: ["*"], actForUsers: true, rpcs: [], strict: false }],
    providers: [],
  }),
);

const OPEN = ["grpc.health.v1.Health", "grpc.reflection.*"];

async function run(call: CallContext, authenticator = fakeAuthenticator()) {
  const interceptor = createAuthenticationInterceptor({ authenticator, policyHolder, openServices: OPEN });
  let invoked = 0;
  const outcome = await interceptor(call, async () => {
    invoked++;
    return "response";
  }).then(
    (value) => ({ value, error: undefined }),
    (error: unknown) => ({ value: undefined, error }),
  );
  return { ...outcome, invoked, authenticator };
}

describe("authentication interceptor", () => {
  it("authenticates, sets the principal and calls the handler", async () => {
    const call = fakeCall("oauthbroker.v1.IntegrationService", "ListIntegrations", { authorization: "Bearer user" });
    const result = await run(call);
    expect(result.value).toBe("response");
    expect(result.invoked).toBe(1);
    expect(call.principal).toEqual(PRINCIPALS["Bearer user"]);
  });

  it("refuses a call without credentials before the handler runs", async () => {
    const call = fakeCall("oauthbroker.v1.IntegrationService", "ListIntegrations");
    const result = await run(call);
    expect(result.invoked).toBe(0);
    expect((result.error as BrokerError).code).toBe("unauthenticated");
    expect(call.principal).toBeUndefined();
  });

  it("refuses an authenticated caller the method is forbidden to", async () => {
    const call = fakeCall("oauthbroker.v1.TokenService", "GetAccessToken", { authorization: "Bearer user" });
    const result = await run(call);
    expect(result.invoked).toBe(0);
    const error = result.error as BrokerError;
    expect(error.code).toBe("permission_denied");
    expect(error.metadata).toEqual({ method: "oauthbroker.v1.TokenService/GetAccessToken" });
  });

  it("leaves health and reflection open, without authenticating", async () => {
    for (const [service, method] of [
      ["grpc.health.v1.Health", "Check"],
      ["grpc.reflection.v1.ServerReflection", "ServerReflectionInfo"],
      ["grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo"],
    ] as const) {
      const call = fakeCall(service, method, { authorization: "Bearer garbage" });
      const result = await run(call);
      expect(result.value).toBe("response");
      expect(result.authenticator.seen).toEqual([]);
      expect(call.principal).toBeUndefined();
    }
  });

  it("keeps a principal the listener set from a client certificate when no bearer token is sent", async () => {
    const call = fakeCall("oauthbroker.v1.TokenService", "GetAccessToken");
    call.principal = { kind: "service", subject: "billing", issuer: "mtls" };
    const result = await run(call);
    expect(result.value).toBe("response");
    expect(result.authenticator.seen).toEqual([]);
    expect(call.principal.issuer).toBe("mtls");
  });

  it("lets a bearer token decide even when a certificate principal is present", async () => {
    const call = fakeCall("oauthbroker.v1.TokenService", "GetAccessToken", { authorization: "Bearer forged" });
    call.principal = { kind: "service", subject: "billing", issuer: "mtls" };
    const result = await run(call);
    expect((result.error as BrokerError).code).toBe("unauthenticated");
    expect(result.invoked).toBe(0);
  });

  it("uses the policy current at each call (reload)", async () => {
    const holder = createPolicyHolder(createRpcPolicy({ policies: [], providers: [] }));
    const interceptor = createAuthenticationInterceptor({ authenticator: fakeAuthenticator(), policyHolder: holder, openServices: OPEN });
    const call = () => fakeCall("oauthbroker.v1.TokenService", "GetAccessToken", { authorization: "Bearer service" });
    await expect(interceptor(call(), async () => "ok")).rejects.toMatchObject({ code: "permission_denied" });
    holder.replace(policyHolder.current());
    await expect(interceptor(call(), async () => "ok")).resolves.toBe("ok");
  });
});

describe("openServiceMatcher", () => {
  it("matches exact names and dotted prefixes only", () => {
    const isOpen = openServiceMatcher(OPEN);
    expect(isOpen("grpc.health.v1.Health")).toBe(true);
    expect(isOpen("grpc.health.v1.HealthX")).toBe(false);
    expect(isOpen("grpc.reflection.v1.ServerReflection")).toBe(true);
    expect(isOpen("grpc.reflectionevil.Service")).toBe(false);
    expect(isOpen("oauthbroker.v1.TokenService")).toBe(false);
  });
});
