/**
 * The microsoft template against a Microsoft-like oidc-provider peer: `offline_access`,
 * refresh-token rotation (a replayed rotated token revokes the whole grant), AADSTS codes in
 * `invalid_grant`, `oid` / `tid` as the account, and no revocation endpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomNonce, randomPKCECodeVerifier, randomState } from "openid-client";
import type { BrokerError } from "../../src/domain/errors.js";
import type { ProviderClient } from "../../src/domain/ports.js";
import { createProviderClient } from "../../src/providers/create-provider-client.js";
import { type OidcPeer } from "../support/peers/oidc-peer.js";
import { testProviderConfig } from "../support/peers/provider-config.js";
import { captureLogger } from "../support/log-capture.js";
import { caught } from "../support/caught.js";
import { startMicrosoftPeer } from "../support/peers/microsoft-peer.js";

const REDIRECT_URI = "http://127.0.0.1:18080/oauth/callback/microsoft";
const SECRET = "ms~secret.value_1";


describe("microsoft template against a Microsoft-like peer", () => {
  let peer: OidcPeer;
  let client: ProviderClient;
  const { logger, log } = captureLogger();
  const secrets: string[] = [SECRET];
  const errors: BrokerError[] = [];

  async function connect(username: string, scopes: readonly string[]) {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const nonce = randomNonce();
    const url = await client.authorizationUrl({ state, scopes, redirectUri: REDIRECT_URI, codeVerifier, nonce });
    const callbackUrl = await peer.driveConsent(url, { username });
    const grant = await client.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier, nonce, requestedScopes: scopes });
    secrets.push(codeVerifier, callbackUrl.searchParams.get("code") ?? "", grant.tokens.accessToken, grant.tokens.refreshToken ?? "");
    return grant;
  }

  beforeAll(async () => {
    ({ peer, client } = await startMicrosoftPeer({ secret: SECRET, redirectUri: REDIRECT_URI, logger, accessTokenTtlSeconds: 4000 }));
  });

  afterAll(async () => {
    await peer.close();
  });

  it("asks for offline_access and the ID token scopes, without Google's parameters", async () => {
    const url = await client.authorizationUrl({ state: "s", scopes: ["User.Read"], redirectUri: REDIRECT_URI, codeVerifier: randomPKCECodeVerifier() });
    expect(url.searchParams.get("scope")?.split(" ").sort()).toEqual(["User.Read", "offline_access", "openid", "profile"]);
    expect(url.searchParams.get("access_type")).toBeNull();
    expect(url.searchParams.get("prompt")).toBeNull();
  });

  it("identifies the account by oid with the tenant id, and issues a refresh token for offline_access", async () => {
    const grant = await connect("alice", ["User.Read"]);
    const ids = peer.accountIds("alice");
    expect(ids.oid).not.toBe(ids.sub);
    expect(grant.account).toEqual({
      id: ids.oid,
      name: "alice@contoso.test",
      attributes: { tid: peer.tenantId, preferred_username: "alice@contoso.test" },
    });
    expect(grant.tokens.refreshToken).toBeDefined();
    expect(grant.tokens.expiresAt.getTime()).toBeGreaterThan(Date.now() + 3990_000);
    expect([...grant.tokens.scopes].sort()).toEqual(["User.Read", "offline_access", "openid", "profile"]);
    // Graph /me names the same object id.
    await expect(client.fetchAccount?.(grant.tokens.accessToken)).resolves.toMatchObject({ id: ids.oid });
  });

  it("rotates the refresh token on every refresh; replaying a rotated one kills the grant", async () => {
    const grant = await connect("bob", ["User.Read"]);
    const original = grant.tokens.refreshToken ?? "";
    const first = await client.refresh(original);
    const rotated = first.tokens.refreshToken ?? "";
    expect(rotated).not.toBe("");
    expect(rotated).not.toBe(original);
    expect(first.account).toMatchObject({ id: peer.accountIds("bob").oid });
    secrets.push(rotated, first.tokens.accessToken);

    const replay = await caught(client.refresh(original));
    errors.push(replay);
    expect(replay.code).toBe("integration_needs_reauth");
    expect(replay.metadata).toMatchObject({ error: "invalid_grant", aadsts: "70008" });
    expect(replay.message).toContain("AADSTS70008");

    // The replay revoked the whole grant: the newest refresh token is dead too.
    const after = await caught(client.refresh(rotated));
    errors.push(after);
    expect(after.code).toBe("integration_needs_reauth");
  });

  it("answers not_supported for revocation without calling the provider", async () => {
    const grant = await connect("carol", []);
    await expect(client.revoke(grant.tokens.refreshToken ?? "", "refresh_token")).resolves.toEqual({ outcome: "not_supported" });
    expect(peer.revocationRequests()).toBe(0);
  });

  it("maps a wrong client secret (client_secret_post) to provider_misconfigured", async () => {
    const wrong = await createProviderClient(
      testProviderConfig({
        id: "microsoft",
        kind: "microsoft",
        clientSecret: "not-the-secret",
        clientAuthMethod: "client_secret_post",
        endpoints: { issuer: peer.issuer },
      }),
      { logger },
    );
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const url = await wrong.authorizationUrl({ state, scopes: [], redirectUri: REDIRECT_URI, codeVerifier });
    const callbackUrl = await peer.driveConsent(url, { username: "dave" });
    const error = await caught(wrong.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier, requestedScopes: [] }));
    errors.push(error);
    expect(error.code).toBe("provider_misconfigured");
    expect(error.message).not.toContain("not-the-secret");
  });

  it("maps token endpoint 429 to provider_rate_limited with its Retry-After", async () => {
    const grant = await connect("erin", []);
    peer.setTokenEndpointFault("429");
    try {
      const error = await caught(client.refresh(grant.tokens.refreshToken ?? ""));
      errors.push(error);
      expect(error.code).toBe("provider_rate_limited");
      expect(error.retryAfterMs).toBe(7_000);
    } finally {
      peer.setTokenEndpointFault("none");
    }
  });

  it("puts no secret in any error or log line", () => {
    const texts = [...errors.map((e) => `${e.message} ${JSON.stringify(e.metadata)} ${String(e.cause)}`), log.text()];
    expect(errors.length).toBeGreaterThanOrEqual(4);
    for (const secret of secrets.filter((s) => s !== "")) for (const text of texts) expect(text).not.toContain(secret);
  });
});
