import { describe, it, expect } from "vitest";
import { AuditService } from "../../src/gen/oauthbroker/v1/audit_service_pb.js";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { createRateLimiter, rateLimitedError } from "../../src/domain/rate-limiter.js";
import { rpcClass } from "../../src/transport/rpc-operations.js";
import { manualClock } from "../support/manual-clock.js";

const TEN_PER_SECOND = { ratePerSecond: 10, burst: 3 };

describe("token-bucket rate limiter", () => {
  it("allows a burst, then refuses with the time until the next token", () => {
    const clock = manualClock();
    const limiter = createRateLimiter({ clock });
    for (let i = 0; i < 3; i++) expect(limiter.take("k", TEN_PER_SECOND)).toEqual({ allowed: true });
    expect(limiter.take("k", TEN_PER_SECOND)).toEqual({ allowed: false, retryAfterMs: 100 });
    clock.advance(40);
    expect(limiter.take("k", TEN_PER_SECOND)).toEqual({ allowed: false, retryAfterMs: 60 });
  });

  it("refills at the sustained rate and never beyond the burst", () => {
    const clock = manualClock();
    const limiter = createRateLimiter({ clock });
    for (let i = 0; i < 3; i++) limiter.take("k", TEN_PER_SECOND);
    clock.advance(100);
    expect(limiter.take("k", TEN_PER_SECOND).allowed).toBe(true);
    expect(limiter.take("k", TEN_PER_SECOND).allowed).toBe(false);
    clock.advance(60_000);
    const results = Array.from({ length: 5 }, () => limiter.take("k", TEN_PER_SECOND).allowed);
    expect(results).toEqual([true, true, true, false, false]);
  });

  it("keeps keys apart", () => {
    const limiter = createRateLimiter({ clock: manualClock() });
    const limit = { ratePerSecond: 1, burst: 1 };
    expect(limiter.take("a", limit).allowed).toBe(true);
    expect(limiter.take("a", limit).allowed).toBe(false);
    expect(limiter.take("b", limit).allowed).toBe(true);
  });

  it("computes retryAfter from a slow rate", () => {
    const limiter = createRateLimiter({ clock: manualClock() });
    const limit = { ratePerSecond: 0.5, burst: 1 };
    limiter.take("k", limit);
    expect(limiter.take("k", limit)).toEqual({ allowed: false, retryAfterMs: 2000 });
  });

  it("applies a changed limit (reload) to an existing bucket", () => {
    const clock = manualClock();
    const limiter = createRateLimiter({ clock });
    for (let i = 0; i < 3; i++) limiter.take("k", TEN_PER_SECOND);
    clock.advance(1000);
    // The new, smaller burst caps what had refilled.
    const small = { ratePerSecond: 10, burst: 1 };
    expect(limiter.take("k", small).allowed).toBe(true);
    expect(limiter.take("k", small).allowed).toBe(false);
  });

  it("treats a non-positive rate or burst as no limit", () => {
    const limiter = createRateLimiter({ clock: manualClock() });
    for (let i = 0; i < 100; i++) expect(limiter.take("k", { ratePerSecond: 0, burst: 0 }).allowed).toBe(true);
    expect(limiter.size()).toBe(0);
  });

  it("holds at most maxKeys buckets, evicting the least recently used", () => {
    const clock = manualClock();
    const limiter = createRateLimiter({ clock, maxKeys: 100 });
    const limit = { ratePerSecond: 1, burst: 1 };
    for (let i = 0; i < 1000; i++) limiter.take(`k${i}`, limit);
    expect(limiter.size()).toBe(100);
    // k999 was used last and is still held (empty): refused.
    expect(limiter.take("k999", limit).allowed).toBe(false);
    // k0 was evicted long ago: a fresh bucket.
    expect(limiter.take("k0", limit).allowed).toBe(true);
  });

  it("evicts refilled buckets before busy ones when over the bound", () => {
    const clock = manualClock();
    const limiter = createRateLimiter({ clock, maxKeys: 2, sweepIntervalMs: 1_000_000 });
    const slow = { ratePerSecond: 0.001, burst: 1 };
    const fast = { ratePerSecond: 1000, burst: 1 };
    limiter.take("busy", slow);
    limiter.take("idle", fast);
    clock.advance(10);
    limiter.take("busy", slow); // refused, and now most recently used
    limiter.take("idle", fast); // refilled and taken again: empty
    clock.advance(10);
    // "busy" is least recently used now but still empty; "idle" has refilled.
    limiter.take("new", fast);
    expect(limiter.size()).toBe(2);
    expect(limiter.take("busy", slow).allowed).toBe(false);
  });

  it("sweeps refilled buckets out so idle keys cost no memory", () => {
    const clock = manualClock();
    const limiter = createRateLimiter({ clock, sweepIntervalMs: 1000 });
    for (let i = 0; i < 50; i++) limiter.take(`k${i}`, TEN_PER_SECOND);
    expect(limiter.size()).toBe(50);
    clock.advance(1000);
    limiter.take("other", TEN_PER_SECOND);
    expect(limiter.size()).toBe(1);
  });
});

describe("rpcClass", () => {
  const expected: Record<string, string> = {
    GetAccessToken: "token",
    ListIntegrations: "read",
    GetIntegration: "read",
    WatchIntegrations: "read",
    ListProviders: "read",
    StartAuthorization: "write",
    CompleteAuthorization: "write",
    RefreshIntegration: "write",
    SyncIntegrations: "write",
    DeleteIntegration: "write",
    GetStatus: "admin",
    ListAuditEvents: "admin",
  };
  const services = [TokenService, AuthorizationService, IntegrationService, ProviderService, StatusService, AuditService];

  it("classifies every RPC of the generated services", () => {
    const methods = services.flatMap((service) => service.methods.map((method) => ({ service, method })));
    expect(methods.map(({ method }) => method.name).sort()).toEqual(Object.keys(expected).sort());
    for (const { service, method } of methods) {
      expect(rpcClass(`${service.typeName}/${method.name}`), method.name).toBe(expected[method.name]);
    }
  });

  it("counts unknown methods as reads", () => {
    expect(rpcClass("grpc.health.v1.Health/Check")).toBe("read");
  });

  it("builds the rate_limited error with RetryInfo", () => {
    const error = rateLimitedError("token calls", 250);
    expect(error.code).toBe("rate_limited");
    expect(error.retryAfterMs).toBe(250);
    expect(error.message).toBe("rate limit exceeded for token calls; retry after 250 ms");
  });
});
