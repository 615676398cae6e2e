/**
 * The capability profile the domain sees of each provider: the provider-specific knowledge
 * (who speaks OpenID Connect, who issues a refresh token only with a consent prompt, when
 * credentials count as configured) decided in providers/ from configuration.
 */
import { describe, expect, it } from "vitest";
import type { ProviderKind } from "../../src/config/types.js";
import { providerProfile } from "../../src/providers/provider-profile.js";
import { testProviderConfig } from "../support/peers/provider-config.js";

const KINDS: readonly ProviderKind[] = ["google", "youtube", "microsoft", "notion", "oidc", "oauth2", "sandbox"];

describe("providerProfile", () => {
  it("asks for a consent prompt for a refresh token only with Google and YouTube (providers.md)", () => {
    const needing = KINDS.filter((kind) => providerProfile(testProviderConfig({ id: kind, kind, clientSecret: "s" })).refreshTokenOnlyWithConsent);
    expect(needing).toEqual(["google", "youtube"]);
  });

  it("speaks OpenID Connect (a nonce per flow) with every kind but Notion and plain OAuth 2.0", () => {
    const oidc = KINDS.filter((kind) => providerProfile(testProviderConfig({ id: kind, kind, clientSecret: "s" })).oidc);
    expect(oidc).toEqual(["google", "youtube", "microsoft", "oidc", "sandbox"]);
  });

  it("counts credentials as configured with a client id and a secret, or public-client auth; the sandbox fills in its own", () => {
    const configured = (overrides: Parameters<typeof testProviderConfig>[0]) => providerProfile(testProviderConfig(overrides)).credentialsConfigured;
    expect(configured({ id: "a", kind: "oidc", clientSecret: "s" })).toBe(true);
    expect(configured({ id: "b", kind: "oidc" })).toBe(false);
    expect(configured({ id: "c", kind: "oidc", clientId: "", clientSecret: "s" })).toBe(false);
    expect(configured({ id: "d", kind: "oidc", clientId: undefined, clientSecret: "s" })).toBe(false);
    expect(configured({ id: "e", kind: "oauth2", clientAuthMethod: "none" })).toBe(true);
    expect(configured({ id: "f", kind: "sandbox", clientId: undefined })).toBe(true);
  });

  it("carries the scopes and PKCE setting as configured, and nothing secret", () => {
    const profile = providerProfile(
      testProviderConfig({ id: "google", kind: "google", clientSecret: "top-secret", defaultScopes: ["openid"], allowedScopes: ["calendar.read"], pkce: false }),
    );
    expect(profile).toEqual({
      id: "google",
      defaultScopes: ["openid"],
      allowedScopes: ["calendar.read"],
      pkce: false,
      oidc: true,
      refreshTokenOnlyWithConsent: true,
      credentialsConfigured: true,
      grantHolder: "google broker-client",
      revocationEndsWholeGrant: true,
    });
    expect(JSON.stringify(profile)).not.toContain("top-secret");
  });

  it("names one grant holder for Google and YouTube on one client, and none across servers or without a client id", () => {
    const holder = (overrides: Parameters<typeof testProviderConfig>[0]) => providerProfile(testProviderConfig(overrides)).grantHolder;
    expect(holder({ id: "google", kind: "google", clientId: "c1" })).toBe(holder({ id: "youtube", kind: "youtube", clientId: "c1" }));
    expect(holder({ id: "google", kind: "google", clientId: "c1" })).not.toBe(holder({ id: "google-2", kind: "google", clientId: "c2" }));
    const issuer = (url: string) => ({ ...testProviderConfig({ id: "idp", kind: "oidc", clientId: "c1" }).endpoints, issuer: url });
    expect(holder({ id: "a", kind: "oidc", clientId: "c1", endpoints: issuer("https://a.example") })).not.toBe(
      holder({ id: "b", kind: "oidc", clientId: "c1", endpoints: issuer("https://b.example") }),
    );
    expect(holder({ id: "none", kind: "oidc", clientId: "" })).toBeUndefined();
    expect(providerProfile(testProviderConfig({ id: "ms", kind: "microsoft" })).revocationEndsWholeGrant).toBe(false);
  });
});
