/**
 * The google and youtube templates against a Google-like oidc-provider peer on 127.0.0.1:
 * the whole browser flow, refresh without rotation, RFC 7009 revocation, and the mapping of
 * each wire error.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { calculatePKCECodeChallenge, randomNonce, randomPKCECodeVerifier, randomState } from "openid-client";
import type { BrokerError } from "../../src/domain/errors.js";
import type { ProviderClient } from "../../src/domain/ports.js";
import { createProviderClient } from "../../src/providers/create-provider-client.js";
import { RETRY_AFTER_SECONDS, startOidcPeer, type OidcPeer } from "../support/peers/oidc-peer.js";
import { testProviderConfig } from "../support/peers/provider-config.js";
import { captureLogger } from "../support/log-capture.js";
import { caught } from "../support/caught.js";

const REDIRECT_URI = "http://127.0.0.1:18080/oauth/callback/google";
/** Reserved characters: only RFC 6749 §2.3.1 encoding gets this through Basic intact. */
const SECRET = "g00gle:secret+with/odd=chars%&";


describe("google template against a Google-like peer", () => {
  let peer: OidcPeer;
  let client: ProviderClient;
  const { logger, log } = captureLogger();
  const secrets: string[] = [SECRET];
  const errors: BrokerError[] = [];

  async function fail(promise: Promise<unknown>): Promise<BrokerError> {
    const error = await caught(promise);
    errors.push(error);
    return error;
  }

  async function connect(username: string, scopes: readonly string[], options: { grantScopes?: string[] } = {}) {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const nonce = randomNonce();
    secrets.push(codeVerifier);
    const url = await client.authorizationUrl({ state, scopes, redirectUri: REDIRECT_URI, codeVerifier, nonce });
    const callbackUrl = await peer.driveConsent(url, { username, grantScopes: options.grantScopes });
    secrets.push(callbackUrl.searchParams.get("code") ?? "");
    const grant = await client.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier, nonce, requestedScopes: scopes });
    secrets.push(grant.tokens.accessToken, grant.tokens.refreshToken ?? "");
    return grant;
  }

  beforeAll(async () => {
    peer = await startOidcPeer({
      flavor: "google",
      clients: [{ client_id: "broker-client", client_secret: SECRET, redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: "client_secret_basic" }],
    });
    // A call timeout only a hung peer reaches: the timeout test below uses a client of its own.
    client = await googleClient(10_000);
  });

  const googleClient = (timeoutMs: number) =>
    createProviderClient(testProviderConfig({ id: "google", kind: "google", clientSecret: SECRET, endpoints: { issuer: peer.issuer }, timeoutMs }), { logger });

  afterAll(async () => {
    await peer.close();
  });

  it("builds an authorization URL with Google's offline parameters, PKCE S256, nonce and state", async () => {
    const codeVerifier = randomPKCECodeVerifier();
    const url = await client.authorizationUrl({ state: "st-1", scopes: ["calendar.read"], redirectUri: REDIRECT_URI, codeVerifier, nonce: "n-1" });
    expect(url.origin + url.pathname).toBe(`${peer.issuer}/auth`);
    const params = Object.fromEntries(url.searchParams);
    expect(params).toMatchObject({
      client_id: "broker-client",
      response_type: "code",
      redirect_uri: REDIRECT_URI,
      state: "st-1",
      nonce: "n-1",
      access_type: "offline",
      include_granted_scopes: "true",
      code_challenge_method: "S256",
      code_challenge: await calculatePKCECodeChallenge(codeVerifier),
    });
    expect(params["scope"]?.split(" ").sort()).toEqual(["calendar.read", "openid"]);
    expect(params["prompt"]).toBeUndefined();
    const forced = await client.authorizationUrl({ state: "s", scopes: [], redirectUri: REDIRECT_URI, codeVerifier, forceConsent: true });
    expect(forced.searchParams.get("prompt")).toBe("consent");
  });

  it("exchanges the code for tokens and identifies the account by sub, named by e-mail", async () => {
    const before = Date.now();
    const grant = await connect("alice", ["email", "calendar.read"]);
    expect(grant.tokens.accessToken).not.toBe("");
    expect(grant.tokens.tokenType).toBe("Bearer");
    expect(grant.tokens.refreshToken).toBeDefined();
    expect([...grant.tokens.scopes].sort()).toEqual(["calendar.read", "email", "openid"]);
    expect(grant.tokens.expiresAt.getTime()).toBeGreaterThanOrEqual(before + 3599_000 - 2_000);
    expect(grant.tokens.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 3599_000 + 1_000);
    expect(grant.account).toEqual({
      id: peer.accountIds("alice").sub,
      name: "alice@example.test",
      attributes: { email: "alice@example.test" },
    });
  });

  it("records the scopes the user granted, not the ones asked for", async () => {
    const grant = await connect("bob", ["calendar.read", "calendar.write"], { grantScopes: ["calendar.read"] });
    expect([...grant.tokens.scopes].sort()).toEqual(["calendar.read", "openid"]);
  });

  it("refreshes without rotation: no new refresh token, and the old one keeps working", async () => {
    const grant = await connect("carol", ["calendar.read"]);
    const refreshToken = grant.tokens.refreshToken ?? "";
    const first = await client.refresh(refreshToken);
    expect(first.tokens.accessToken).not.toBe(grant.tokens.accessToken);
    expect(first.tokens.refreshToken).toBeUndefined();
    expect([...first.tokens.scopes].sort()).toEqual(["calendar.read", "openid"]);
    const second = await client.refresh(refreshToken);
    expect(second.tokens.accessToken).not.toBe(first.tokens.accessToken);
    secrets.push(first.tokens.accessToken, second.tokens.accessToken);
    // The broker relies on it: a refused Google refresh token is a revoked grant, never a lost rotation.
    expect(client.rotatesRefreshTokens).toBe(false);
  });

  it("revokes a refresh token (RFC 7009), after which refreshing needs re-authorization", async () => {
    const grant = await connect("dave", ["calendar.read"]);
    const refreshToken = grant.tokens.refreshToken ?? "";
    await expect(client.revoke(refreshToken, "refresh_token")).resolves.toEqual({ outcome: "revoked" });
    // RFC 7009 §2.2: unknown tokens are revoked too.
    await expect(client.revoke("never-issued", "access_token")).resolves.toEqual({ outcome: "revoked" });
    const error = await fail(client.refresh(refreshToken));
    expect(error.code).toBe("integration_needs_reauth");
    expect(error.reason).toBe("INVALID_GRANT");
    expect(error.metadata).toMatchObject({ provider: "google", error: "invalid_grant", http_status: "400" });
  });

  it("maps a grant the user removed at the provider to integration_needs_reauth", async () => {
    const grant = await connect("erin", ["calendar.read"]);
    await peer.revokeGrantsFor("erin");
    const error = await fail(client.refresh(grant.tokens.refreshToken ?? ""));
    expect(error.code).toBe("integration_needs_reauth");
  });

  it("maps a wrong client secret to provider_misconfigured", async () => {
    const wrong = await createProviderClient(
      testProviderConfig({ id: "google", kind: "google", clientSecret: "wrong-secret", endpoints: { issuer: peer.issuer } }),
      { logger },
    );
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const url = await wrong.authorizationUrl({ state, scopes: [], redirectUri: REDIRECT_URI, codeVerifier });
    const callbackUrl = await peer.driveConsent(url, { username: "frank" });
    const error = await fail(wrong.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier, requestedScopes: [] }));
    expect(error.code).toBe("provider_misconfigured");
    expect(error.metadata["error"]).toBe("invalid_client");
  });

  it("maps 429 and 503 with Retry-After, and a slow token endpoint hits the timeout quickly", async () => {
    const grant = await connect("gina", ["calendar.read"]);
    const refreshToken = grant.tokens.refreshToken ?? "";
    try {
      peer.setTokenEndpointFault("429");
      const limited = await fail(client.refresh(refreshToken));
      expect(limited.code).toBe("provider_rate_limited");
      expect(limited.retryAfterMs).toBe(RETRY_AFTER_SECONDS * 1000);

      peer.setTokenEndpointFault("503");
      const down = await fail(client.refresh(refreshToken));
      expect(down.code).toBe("provider_unavailable");
      expect(down.retryAfterMs).toBe(RETRY_AFTER_SECONDS * 1000);

      // A peer that never answers: only the client's 500 ms timeout ends the call.
      peer.setTokenEndpointFault("hold");
      const slow = await fail((await googleClient(500)).refresh(refreshToken));
      expect(slow.code).toBe("provider_unavailable");
      expect(slow.reason).toBe("PROVIDER_TIMEOUT");
    } finally {
      peer.setTokenEndpointFault("none");
    }
    await expect(client.refresh(refreshToken)).resolves.toBeDefined();
  });

  it("answers retry_later when the revocation endpoint is unavailable", async () => {
    peer.setRevocationEndpointFault("503");
    try {
      await expect(client.revoke("some-token", "access_token")).resolves.toEqual({ outcome: "retry_later", retryAfterMs: RETRY_AFTER_SECONDS * 1000 });
    } finally {
      peer.setRevocationEndpointFault("none");
    }
  });

  it("rejects a callback with another state or another issuer before calling the token endpoint", async () => {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const url = await client.authorizationUrl({ state, scopes: [], redirectUri: REDIRECT_URI, codeVerifier });
    const callbackUrl = await peer.driveConsent(url, { username: "hank" });
    expect(callbackUrl.searchParams.get("iss")).toBe(peer.issuer);
    const before = peer.tokenRequests();

    const wrongState = await fail(client.exchangeCode({ callbackUrl, expectedState: randomState(), redirectUri: REDIRECT_URI, codeVerifier, requestedScopes: [] }));
    expect(wrongState.code).toBe("authorization_session_invalid");
    expect(wrongState.reason).toBe("STATE_MISMATCH");

    const mixedUp = new URL(callbackUrl);
    mixedUp.searchParams.set("iss", "https://attacker.example");
    const wrongIssuer = await fail(client.exchangeCode({ callbackUrl: mixedUp, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier, requestedScopes: [] }));
    expect(wrongIssuer.code).toBe("authorization_session_invalid");
    expect(wrongIssuer.reason).toBe("ISSUER_MISMATCH");

    const noIssuer = new URL(callbackUrl);
    noIssuer.searchParams.delete("iss");
    const missing = await fail(client.exchangeCode({ callbackUrl: noIssuer, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier, requestedScopes: [] }));
    expect(missing.reason).toBe("ISSUER_MISSING");
    expect(peer.tokenRequests()).toBe(before);
  });

  it("refuses a wrong PKCE verifier and a reused code", async () => {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const url = await client.authorizationUrl({ state, scopes: [], redirectUri: REDIRECT_URI, codeVerifier });
    const callbackUrl = await peer.driveConsent(url, { username: "ivy" });
    const wrongVerifier = await fail(
      client.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier: randomPKCECodeVerifier(), requestedScopes: [] }),
    );
    expect(wrongVerifier.code).toBe("authorization_session_invalid");
    expect(wrongVerifier.reason).toBe("AUTHORIZATION_CODE_REJECTED");

    const state2 = randomState();
    const verifier2 = randomPKCECodeVerifier();
    const url2 = await client.authorizationUrl({ state: state2, scopes: [], redirectUri: REDIRECT_URI, codeVerifier: verifier2 });
    const callback2 = await peer.driveConsent(url2, { username: "ivy" });
    const input = { callbackUrl: callback2, expectedState: state2, redirectUri: REDIRECT_URI, codeVerifier: verifier2, requestedScopes: [] };
    const grant = await client.exchangeCode(input);
    secrets.push(grant.tokens.accessToken, grant.tokens.refreshToken ?? "");
    const reused = await fail(client.exchangeCode(input));
    expect(reused.code).toBe("authorization_session_invalid");
  });

  it("rejects an ID token minted for another nonce", async () => {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const url = await client.authorizationUrl({ state, scopes: [], redirectUri: REDIRECT_URI, codeVerifier, nonce: randomNonce() });
    const callbackUrl = await peer.driveConsent(url, { username: "iris" });
    const error = await fail(
      client.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier, nonce: randomNonce(), requestedScopes: [] }),
    );
    expect(error.code).toBe("authorization_session_invalid");
    expect(error.reason).toBe("NONCE_MISMATCH");
  });

  it("maps a denied consent to authorization_denied", async () => {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const url = await client.authorizationUrl({ state, scopes: [], redirectUri: REDIRECT_URI, codeVerifier });
    const callbackUrl = await peer.driveConsent(url, { username: "jane", deny: true });
    expect(callbackUrl.searchParams.get("error")).toBe("access_denied");
    const error = await fail(client.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, codeVerifier, requestedScopes: [] }));
    expect(error.code).toBe("authorization_denied");
    expect(error.metadata["error"]).toBe("access_denied");
  });

  it("reads the account again through userinfo", async () => {
    const grant = await connect("kate", ["email"]);
    await expect(client.fetchAccount?.(grant.tokens.accessToken)).resolves.toEqual(grant.account);
  });

  it("starts without reaching the provider and maps an unreachable issuer to provider_unavailable", async () => {
    const offline = await createProviderClient(
      testProviderConfig({ id: "google", kind: "google", clientSecret: SECRET, endpoints: { issuer: "http://127.0.0.1:9" } }),
      { logger },
    );
    const error = await fail(offline.authorizationUrl({ state: "s", scopes: [], redirectUri: REDIRECT_URI, codeVerifier: randomPKCECodeVerifier() }));
    expect(error.code).toBe("provider_unavailable");
    expect(error.retryAfterMs).toBeGreaterThan(0);
  });

  it("maps a caller's cancelled signal to deadline_exceeded", async () => {
    const grant = await connect("liam", []);
    peer.setTokenEndpointFault("slow");
    try {
      const error = await fail(client.refresh(grant.tokens.refreshToken ?? "", { signal: AbortSignal.timeout(100) }));
      expect(error.code).toBe("deadline_exceeded");
    } finally {
      peer.setTokenEndpointFault("none");
    }
  });

  it("puts no secret in any error or log line", () => {
    expect(errors.length).toBeGreaterThan(10);
    const texts = [
      ...errors.map((e) => `${e.message} ${JSON.stringify(e.metadata)} ${String(e.cause)}`),
      log.text(),
    ];
    for (const secret of secrets.filter((s) => s !== "")) {
      for (const text of texts) expect(text).not.toContain(secret);
    }
  });
});

describe("youtube template against the Google-like peer", () => {
  let peer: OidcPeer;
  let client: ProviderClient;
  const redirectUri = "http://127.0.0.1:18080/oauth/callback/youtube";
  const scope = "https://www.googleapis.com/auth/youtube.readonly";

  beforeAll(async () => {
    peer = await startOidcPeer({
      flavor: "google",
      clients: [{ client_id: "broker-client", client_secret: "yt-secret", redirect_uris: [redirectUri], token_endpoint_auth_method: "client_secret_post" }],
    });
    client = await createProviderClient(
      testProviderConfig({
        id: "youtube",
        kind: "youtube",
        clientSecret: "yt-secret",
        clientAuthMethod: "client_secret_post",
        endpoints: { issuer: peer.issuer, api: peer.apiBase },
      }),
      { logger: captureLogger().logger },
    );
  });

  afterAll(async () => {
    await peer.close();
  });

  it("identifies the account by its channel, and maps 403 quotaExceeded to provider_rate_limited", async () => {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const url = await client.authorizationUrl({ state, scopes: [scope], redirectUri, codeVerifier, nonce: "unused" });
    expect(url.searchParams.get("scope")).toBe(scope);
    expect(url.searchParams.get("nonce")).toBeNull();
    expect(url.searchParams.get("access_type")).toBe("offline");
    const callbackUrl = await peer.driveConsent(url, { username: "maria" });
    const grant = await client.exchangeCode({ callbackUrl, expectedState: state, redirectUri, codeVerifier, requestedScopes: [scope] });
    expect(grant.account).toEqual({ id: peer.accountIds("maria").channelId, name: "maria videos", attributes: { custom_url: "@maria" } });
    expect(grant.tokens.scopes).toEqual([scope]);

    peer.setYouTubeQuotaExceeded(true);
    try {
      const error = await caught(client.fetchAccount?.(grant.tokens.accessToken) ?? Promise.resolve());
      expect(error.code).toBe("provider_rate_limited");
      expect(error.reason).toBe("PROVIDER_QUOTA_EXCEEDED");
      expect(error.retryAfterMs).toBeGreaterThan(0);
      expect(error.retryAfterMs).toBeLessThanOrEqual(24 * 60 * 60 * 1000);
    } finally {
      peer.setYouTubeQuotaExceeded(false);
    }
    await expect(client.fetchAccount?.(grant.tokens.accessToken)).resolves.toMatchObject({ id: peer.accountIds("maria").channelId });
  });
});
