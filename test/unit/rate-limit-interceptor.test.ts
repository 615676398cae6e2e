import { describe, it, expect } from "vitest";
import { createRateLimitInterceptor, enforceStartAuthorizationLimit } from "../../src/transport/interceptors/rate-limit.js";
import type { CallContext } from "../../src/transport/call.js";
import type { Config } from "../../src/config/types.js";
import { BrokerError } from "../../src/domain/errors.js";
import { createRateLimiter } from "../../src/domain/rate-limiter.js";
import type { Principal } from "../../src/domain/types.js";
import { manualClock } from "../support/manual-clock.js";

function fakeCall(service: string, method: string, principal: Principal | undefined): CallContext {
  return {
    service,
    method,
    methodKind: "unary",
    protocol: "grpc",
    requestHeader: new Headers(),
    responseHeader: new Headers(),
    peer: "127.0.0.1:5555",
    requestId: "req-1",
    principal,
    signal: new AbortController().signal,
    deadline: undefined,
  };
}

const LIMITS: Config["limits"] = {
  perPrincipal: {
    token: { ratePerSecond: 1, burst: 2 },
    read: { ratePerSecond: 1, burst: 1 },
    write: { ratePerSecond: 1, burst: 1 },
    admin: { ratePerSecond: 1, burst: 1 },
  },
  startAuthorizationPerUser: { ratePerSecond: 0.1, burst: 1 },
  maxRequestBytes: 1024 * 1024,
};

const billing: Principal = { kind: "service", subject: "billing", issuer: "local" };
const other: Principal = { kind: "service", subject: "reporting", issuer: "local" };

async function outcome(promise: Promise<unknown>): Promise<BrokerError | "ok"> {
  return promise.then(
    () => "ok" as const,
    (error: unknown) => error as BrokerError,
  );
}

describe("rate-limit interceptor", () => {
  it("limits per principal and per RPC class, answering rate_limited with a retry delay", async () => {
    const clock = manualClock();
    const interceptor = createRateLimitInterceptor({ limiter: createRateLimiter({ clock }), limits: LIMITS });
    const token = () => fakeCall("oauthbroker.v1.TokenService", "GetAccessToken", billing);
    let invoked = 0;
    const invoke = async () => void invoked++;
    expect(await outcome(interceptor(token(), invoke))).toBe("ok");
    expect(await outcome(interceptor(token(), invoke))).toBe("ok");
    const refused = await outcome(interceptor(token(), invoke));
    expect(refused).toBeInstanceOf(BrokerError);
    expect((refused as BrokerError).code).toBe("rate_limited");
    expect((refused as BrokerError).retryAfterMs).toBe(1000);
    expect((refused as BrokerError).message).toBe("rate limit exceeded for token calls; retry after 1000 ms");
    expect(invoked).toBe(2);

    // Another class and another principal have their own buckets.
    expect(await outcome(interceptor(fakeCall("oauthbroker.v1.ProviderService", "ListProviders", billing), invoke))).toBe("ok");
    expect(await outcome(interceptor(fakeCall("oauthbroker.v1.TokenService", "GetAccessToken", other), invoke))).toBe("ok");

    clock.advance(1000);
    expect(await outcome(interceptor(token(), invoke))).toBe("ok");
  });

  it("does not limit open calls that carry no principal", async () => {
    const interceptor = createRateLimitInterceptor({ limiter: createRateLimiter({ clock: manualClock() }), limits: LIMITS });
    for (let i = 0; i < 10; i++) {
      expect(await outcome(interceptor(fakeCall("grpc.health.v1.Health", "Check", undefined), async () => undefined))).toBe("ok");
    }
  });

  it("reads the limits through a getter, so a reload applies on the next call", async () => {
    let limits = LIMITS;
    const interceptor = createRateLimitInterceptor({ limiter: createRateLimiter({ clock: manualClock() }), limits: () => limits });
    const status = () => fakeCall("oauthbroker.v1.StatusService", "GetStatus", { kind: "admin", subject: "ops", issuer: "local" });
    expect(await outcome(interceptor(status(), async () => undefined))).toBe("ok");
    expect(await outcome(interceptor(status(), async () => undefined))).not.toBe("ok");
    limits = { ...LIMITS, perPrincipal: { ...LIMITS.perPrincipal, admin: { ratePerSecond: 0, burst: 0 } } };
    expect(await outcome(interceptor(status(), async () => undefined))).toBe("ok");
  });
});

describe("enforceStartAuthorizationLimit", () => {
  it("limits per user, independently of the caller", () => {
    const limiter = createRateLimiter({ clock: manualClock() });
    expect(() => enforceStartAuthorizationLimit(limiter, LIMITS.startAuthorizationPerUser, "alice")).not.toThrow();
    let caught: unknown;
    try {
      enforceStartAuthorizationLimit(limiter, LIMITS.startAuthorizationPerUser, "alice");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(BrokerError);
    expect((caught as BrokerError).code).toBe("rate_limited");
    expect((caught as BrokerError).retryAfterMs).toBe(10_000);
    expect(() => enforceStartAuthorizationLimit(limiter, LIMITS.startAuthorizationPerUser, "bob")).not.toThrow();
  });
});
