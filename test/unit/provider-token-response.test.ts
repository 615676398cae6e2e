/** Token endpoint answers into TokenSets (RFC 6749 §5.1). */
import { describe, expect, it } from "vitest";
import { toTokenSet } from "../../src/providers/token-response.js";

const NOW = new Date("2030-01-01T00:00:00Z");
const base = { provider: "p", now: NOW, defaultLifetimeSeconds: 600, scopesWhenOmitted: ["a", "b"] };

describe("toTokenSet", () => {
  it("reads the granted scope, not the requested one", () => {
    const set = toTokenSet({ access_token: "at", token_type: "bearer", expires_in: 3599, scope: "a  openid a" }, base);
    expect(set).toEqual({ accessToken: "at", tokenType: "Bearer", expiresAt: new Date(NOW.getTime() + 3599_000), refreshToken: undefined, scopes: ["a", "openid"] });
  });

  it("falls back to the requested scopes only when scope is omitted", () => {
    expect(toTokenSet({ access_token: "at" }, base).scopes).toEqual(["a", "b"]);
    expect(toTokenSet({ access_token: "at", scope: "" }, base).scopes).toEqual([]);
  });

  it("refuses a scope that is present but not a string, rather than reading it as requested", () => {
    for (const scope of [["a", "b", "widened"], 7, null, { a: true }]) {
      expect(() => toTokenSet({ access_token: "at", scope }, base)).toThrow(
        expect.objectContaining({ code: "provider_error", reason: "PROVIDER_RESPONSE_INVALID" }),
      );
    }
  });

  it("uses the default lifetime when expires_in is missing or unusable, never forever", () => {
    expect(toTokenSet({ access_token: "at" }, base).expiresAt).toEqual(new Date(NOW.getTime() + 600_000));
    expect(toTokenSet({ access_token: "at", expires_in: "120" }, base).expiresAt).toEqual(new Date(NOW.getTime() + 120_000));
    expect(toTokenSet({ access_token: "at", expires_in: -5 }, base).expiresAt).toEqual(new Date(NOW.getTime() + 600_000));
  });

  it("reports a refresh token only when it is a new one", () => {
    expect(toTokenSet({ access_token: "at", refresh_token: "rt2" }, { ...base, previousRefreshToken: "rt1" }).refreshToken).toBe("rt2");
    expect(toTokenSet({ access_token: "at", refresh_token: "rt1" }, { ...base, previousRefreshToken: "rt1" }).refreshToken).toBeUndefined();
  });

  it("keeps unusual token types and fails without an access token", () => {
    expect(toTokenSet({ access_token: "at", token_type: "DPOP" }, base).tokenType).toBe("DPoP");
    expect(toTokenSet({ access_token: "at", token_type: "mac" }, base).tokenType).toBe("mac");
    expect(() => toTokenSet({ token_type: "bearer" }, base)).toThrow(expect.objectContaining({ code: "provider_error" }));
  });
});
