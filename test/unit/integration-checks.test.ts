/**
 * The errors an integration's state turns into: they say what happened at the provider, never
 * a guess (a grant that never had a refresh token was not "refused").
 */
import { describe, expect, it } from "vitest";
import { checkStatus, noRefreshToken } from "../../src/domain/tokens/integration-checks.js";
import type { Integration } from "../../src/domain/types.js";
import { caught } from "../support/caught.js";

const integration: Integration = {
  id: "6f1c2a4e-0d8b-4c39-9a51-2b7e8f0c1d23",
  userId: "alice",
  provider: "idp",
  externalAccount: { id: "sub-1", name: "alice", attributes: {} },
  grantedScopes: ["openid"],
  status: "active",
  statusReason: "",
  createdAt: new Date(0),
  updatedAt: new Date(0),
  lastRefreshedAt: null,
  lastUsedAt: null,
  accessTokenExpiresAt: null,
  refreshFailureCount: 0,
  hasRefreshToken: false,
};

describe("integration checks", () => {
  it("NO_REFRESH_TOKEN says the provider granted none, when the token expires, and that the user must reconnect", () => {
    const expiresAt = new Date("2030-01-02T03:04:05.000Z");
    const error = noRefreshToken(integration, expiresAt);
    expect(error).toMatchObject({
      code: "failed_precondition",
      reason: "NO_REFRESH_TOKEN",
      metadata: { integration_id: integration.id, provider: "idp", access_token_expire_time: "2030-01-02T03:04:05.000Z" },
    });
    expect(error.message).toBe(
      "the idp provider granted no refresh token, so the broker cannot renew the access token (it expires at 2030-01-02T03:04:05.000Z); the user must connect their account again",
    );
  });

  it("a grant marked for re-authorization names what happened: refused, or never refreshable", async () => {
    const refused = await caught(Promise.resolve().then(() => checkStatus({ ...integration, status: "needs_reauth", statusReason: "invalid_grant" })));
    expect(refused).toMatchObject({ code: "integration_needs_reauth", reason: "INTEGRATION_NEEDS_REAUTH", metadata: { cause: "invalid_grant" } });
    expect(refused.message).toBe("the user must connect their idp account again (the provider refused the stored grant)");
    const never = await caught(Promise.resolve().then(() => checkStatus({ ...integration, status: "needs_reauth", statusReason: "no_refresh_token" })));
    expect(never.message).toBe("the user must connect their idp account again (the provider granted no refresh token)");
    expect(() => checkStatus(integration)).not.toThrow();
  });
});
