/** The token service's memory of resolved integrations and token lifetimes: bounded, expiring, forgettable. */
import { describe, expect, it } from "vitest";
import { createResolvedIntegrations, createTokenLifetimes } from "../../src/domain/tokens/integration-memory.js";
import type { Integration } from "../../src/domain/types.js";
import { manualClock } from "../support/manual-clock.js";

function integration(id: string): Integration {
  const at = new Date(0);
  return {
    id,
    userId: `user-${id}`,
    provider: "google",
    externalAccount: { id: `acct-${id}`, name: "", attributes: {} },
    grantedScopes: [],
    status: "active",
    statusReason: "",
    createdAt: at,
    updatedAt: at,
    lastRefreshedAt: null,
    lastUsedAt: null,
    accessTokenExpiresAt: null,
    refreshFailureCount: 0,
    hasRefreshToken: true,
  };
}

describe("createResolvedIntegrations", () => {
  it("reuses what a key resolved to until the TTL passes", () => {
    const clock = manualClock();
    const resolved = createResolvedIntegrations({ maxEntries: 10, ttlMs: 5_000, clock });
    resolved.remember("id:a", integration("a"));
    clock.advance(4_999);
    expect(resolved.get("id:a")?.id).toBe("a");
    clock.advance(1);
    expect(resolved.get("id:a")).toBeUndefined();
  });

  it("forgets every key that named an integration at once", () => {
    const resolved = createResolvedIntegrations({ maxEntries: 10, ttlMs: 5_000, clock: manualClock() });
    resolved.remember("id:a", integration("a"));
    resolved.remember("user:alice\u0000google\u0000", integration("a"));
    resolved.remember("id:b", integration("b"));
    resolved.forget("a");
    expect(resolved.get("id:a")).toBeUndefined();
    expect(resolved.get("user:alice\u0000google\u0000")).toBeUndefined();
    expect(resolved.get("id:b")?.id).toBe("b");
  });

  it("holds at most maxEntries keys, dropping the oldest, and still forgets what remains", () => {
    const resolved = createResolvedIntegrations({ maxEntries: 2, ttlMs: 5_000, clock: manualClock() });
    resolved.remember("id:a", integration("a"));
    resolved.remember("id:b", integration("b"));
    resolved.remember("id:c", integration("c"));
    expect(resolved.get("id:a")).toBeUndefined();
    expect([resolved.get("id:b")?.id, resolved.get("id:c")?.id]).toEqual(["b", "c"]);
    resolved.forget("b");
    expect(resolved.get("id:b")).toBeUndefined();
    expect(resolved.get("id:c")?.id).toBe("c");
  });
});

describe("createTokenLifetimes", () => {
  it("trusts a learned lifetime for trustMs, then asks to learn it again", () => {
    const clock = manualClock();
    const lifetimes = createTokenLifetimes({ maxEntries: 10, trustMs: 60_000, clock });
    lifetimes.learn("a", new Date(clock.now().getTime() + 3_600_000));
    expect(lifetimes.known("a")).toBe(3_600_000);
    clock.advance(60_000);
    expect(lifetimes.known("a")).toBeUndefined();
  });

  it("is bounded and forgets on request", () => {
    const clock = manualClock();
    const lifetimes = createTokenLifetimes({ maxEntries: 1, trustMs: 60_000, clock });
    lifetimes.learn("a", new Date(clock.now().getTime() + 1_000));
    lifetimes.learn("b", new Date(clock.now().getTime() + 2_000));
    expect(lifetimes.known("a")).toBeUndefined();
    expect(lifetimes.known("b")).toBe(2_000);
    lifetimes.forget("b");
    expect(lifetimes.known("b")).toBeUndefined();
  });
});
