/**
 * The notion template against a Notion look-alike: JSON token endpoint with raw-Basic client
 * auth and `Notion-Version`, no `expires_in` (the configured default applies), rotating refresh
 * tokens, bot / workspace ids as the account, revocation, and Notion's error objects.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomState } from "openid-client";
import type { BrokerError } from "../../src/domain/errors.js";
import type { ProviderClient } from "../../src/domain/ports.js";
import { createProviderClient } from "../../src/providers/create-provider-client.js";
import { NOTION_RETRY_AFTER_SECONDS, startNotionPeer, type NotionPeer } from "../support/peers/notion-peer.js";
import { testProviderConfig } from "../support/peers/provider-config.js";
import { captureLogger } from "../support/log-capture.js";
import { caught } from "../support/caught.js";

const REDIRECT_URI = "http://127.0.0.1:18080/oauth/callback/notion";
/** Reserved characters: Notion compares the raw secret, so only raw Basic works. */
const SECRET = "secret_n0tion:+/=%";
const NOW = new Date("2030-01-02T03:04:05.000Z");


describe("notion template against a Notion look-alike", () => {
  let peer: NotionPeer;
  let client: ProviderClient;
  const { logger, log } = captureLogger();
  const secrets: string[] = [SECRET];
  const errors: BrokerError[] = [];

  async function fail(promise: Promise<unknown>): Promise<BrokerError> {
    const error = await caught(promise);
    errors.push(error);
    return error;
  }

  async function connect(username: string, target = client) {
    const state = randomState();
    const url = await target.authorizationUrl({ state, scopes: [], redirectUri: REDIRECT_URI });
    const callbackUrl = await peer.driveConsent(url, { username });
    secrets.push(callbackUrl.searchParams.get("code") ?? "");
    const grant = await target.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, requestedScopes: [] });
    secrets.push(grant.tokens.accessToken, grant.tokens.refreshToken ?? "");
    return grant;
  }

  function notionConfig(overrides: Parameters<typeof testProviderConfig>[0]) {
    return testProviderConfig({
      clientAuthMethod: "client_secret_basic_raw",
      pkce: false,
      defaultAccessTokenLifetimeSeconds: 1800,
      // Only a hung peer reaches it; the slow-endpoint test sets a short one of its own.
      timeoutMs: 10_000,
      ...overrides,
    });
  }

  beforeAll(async () => {
    peer = await startNotionPeer({ clients: [{ client_id: "broker-client", client_secret: SECRET, redirect_uris: [REDIRECT_URI] }] });
    client = await createProviderClient(notionConfig({ id: "notion", kind: "notion", clientSecret: SECRET, endpoints: { api: peer.apiBase } }), {
      logger,
      clock: { now: () => NOW },
    });
  });

  afterAll(async () => {
    await peer.close();
  });

  it("builds Notion's authorization URL: owner=user, state, no PKCE", async () => {
    const url = await client.authorizationUrl({ state: "st", scopes: [], redirectUri: REDIRECT_URI });
    expect(url.origin + url.pathname).toBe(`${peer.apiBase}/v1/oauth/authorize`);
    expect(Object.fromEntries(url.searchParams)).toEqual({
      owner: "user",
      client_id: "broker-client",
      response_type: "code",
      redirect_uri: REDIRECT_URI,
      state: "st",
    });
  });

  it("exchanges the code: bot and workspace as the account, default lifetime for the missing expires_in", async () => {
    const grant = await connect("alice");
    const installation = peer.installation("alice", "broker-client");
    expect(grant.account).toEqual({
      id: installation.botId,
      name: installation.workspaceName,
      attributes: {
        workspace_id: installation.workspaceId,
        workspace_name: installation.workspaceName,
        owner_user_id: installation.ownerUserId,
      },
    });
    expect(grant.tokens.expiresAt).toEqual(new Date(NOW.getTime() + 1800_000));
    expect(grant.tokens.tokenType).toBe("Bearer");
    expect(grant.tokens.scopes).toEqual([]);
    expect(grant.tokens.refreshToken).toMatch(/^nrt_/);
    await expect(client.fetchAccount?.(grant.tokens.accessToken)).resolves.toMatchObject({
      id: installation.botId,
      attributes: { owner_user_id: installation.ownerUserId },
    });
  });

  it("rotates the refresh token; the old one is then invalid_grant", async () => {
    const grant = await connect("bob");
    const original = grant.tokens.refreshToken ?? "";
    const refreshed = await client.refresh(original);
    secrets.push(refreshed.tokens.accessToken, refreshed.tokens.refreshToken ?? "");
    expect(refreshed.tokens.refreshToken).toBeDefined();
    expect(refreshed.tokens.refreshToken).not.toBe(original);
    expect(refreshed.account?.id).toBe(peer.installation("bob", "broker-client").botId);
    expect(peer.isAccessTokenValid(grant.tokens.accessToken)).toBe(false);

    const error = await fail(client.refresh(original));
    expect(error.code).toBe("integration_needs_reauth");
    expect(error.metadata).toMatchObject({ error: "invalid_grant", http_status: "400" });
  });

  it("revokes with Basic and a JSON body; the tokens stop working", async () => {
    const grant = await connect("carol");
    await expect(client.revoke(grant.tokens.accessToken, "access_token")).resolves.toEqual({ outcome: "revoked" });
    expect(peer.isAccessTokenValid(grant.tokens.accessToken)).toBe(false);
    const error = await fail(client.refresh(grant.tokens.refreshToken ?? ""));
    expect(error.code).toBe("integration_needs_reauth");
  });

  it("maps a removed integration to integration_needs_reauth", async () => {
    const grant = await connect("dave");
    peer.revokeUser("dave");
    expect((await fail(client.refresh(grant.tokens.refreshToken ?? ""))).code).toBe("integration_needs_reauth");
  });

  it("needs raw Basic: a wrong secret or RFC 6749 form-encoding is provider_misconfigured", async () => {
    const wrong = await createProviderClient(notionConfig({ id: "notion", kind: "notion", clientSecret: "wrong", endpoints: { api: peer.apiBase } }), { logger });
    const wrongError = await fail(connect("erin", wrong));
    expect(wrongError.code).toBe("provider_misconfigured");

    const encoded = await createProviderClient(
      notionConfig({ id: "notion", kind: "notion", clientSecret: SECRET, clientAuthMethod: "client_secret_basic", endpoints: { api: peer.apiBase } }),
      { logger },
    );
    const encodedError = await fail(connect("erin", encoded));
    expect(encodedError.code).toBe("provider_misconfigured");
    expect(encodedError.metadata["http_status"]).toBe("401");
  });

  it("maps 429 rate_limited with Retry-After, 529 service_overload, and a slow token endpoint", async () => {
    const grant = await connect("frank");
    const refreshToken = grant.tokens.refreshToken ?? "";
    try {
      peer.setTokenEndpointFault("429");
      const limited = await fail(client.refresh(refreshToken));
      expect(limited.code).toBe("provider_rate_limited");
      expect(limited.metadata["error"]).toBe("rate_limited");
      expect(limited.retryAfterMs).toBe(NOTION_RETRY_AFTER_SECONDS * 1000);

      peer.setTokenEndpointFault("529");
      const overloaded = await fail(client.refresh(refreshToken));
      expect(overloaded.code).toBe("provider_unavailable");
      expect(overloaded.metadata["error"]).toBe("service_overload");

      // The peer answers after 5 s; the 400 ms timeout ends the call long before, however late a
      // loaded machine runs its timer.
      peer.setTokenEndpointFault("slow");
      const hasty = await createProviderClient(notionConfig({ id: "notion", kind: "notion", clientSecret: SECRET, endpoints: { api: peer.apiBase }, timeoutMs: 400 }), {
        logger,
        clock: { now: () => NOW },
      });
      const slow = await fail(hasty.refresh(refreshToken));
      expect(slow.code).toBe("provider_unavailable");
      expect(slow.reason).toBe("PROVIDER_TIMEOUT");
    } finally {
      peer.setTokenEndpointFault("none");
    }
    // The failed attempts did not consume the refresh token.
    const refreshed = await client.refresh(refreshToken);
    secrets.push(refreshed.tokens.accessToken, refreshed.tokens.refreshToken ?? "");
  });

  it("answers retry_later when revocation is unavailable", async () => {
    peer.setRevocationEndpointFault("503");
    try {
      const result = await client.revoke("ntn_whatever", "access_token");
      expect(result.outcome).toBe("retry_later");
    } finally {
      peer.setRevocationEndpointFault("none");
    }
  });

  it("rejects another state and a reused code", async () => {
    const state = randomState();
    const url = await client.authorizationUrl({ state, scopes: [], redirectUri: REDIRECT_URI });
    const callbackUrl = await peer.driveConsent(url, { username: "gina" });
    const before = peer.tokenRequests();
    const wrongState = await fail(client.exchangeCode({ callbackUrl, expectedState: "other", redirectUri: REDIRECT_URI, requestedScopes: [] }));
    expect(wrongState.code).toBe("authorization_session_invalid");
    expect(peer.tokenRequests()).toBe(before);

    const input = { callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, requestedScopes: [] };
    const grant = await client.exchangeCode(input);
    secrets.push(grant.tokens.accessToken, grant.tokens.refreshToken ?? "");
    const reused = await fail(client.exchangeCode(input));
    expect(reused.code).toBe("authorization_session_invalid");
    expect(reused.reason).toBe("AUTHORIZATION_CODE_REJECTED");
  });

  it("maps a denied installation to authorization_denied", async () => {
    const state = randomState();
    const url = await client.authorizationUrl({ state, scopes: [], redirectUri: REDIRECT_URI });
    const callbackUrl = await peer.driveConsent(url, { username: "hank", deny: true });
    const error = await fail(client.exchangeCode({ callbackUrl, expectedState: state, redirectUri: REDIRECT_URI, requestedScopes: [] }));
    expect(error.code).toBe("authorization_denied");
  });

  it("puts no secret in any error or log line", () => {
    expect(errors.length).toBeGreaterThanOrEqual(10);
    const texts = [...errors.map((e) => `${e.message} ${JSON.stringify(e.metadata)} ${String(e.cause)}`), log.text()];
    for (const secret of secrets.filter((s) => s !== "")) for (const text of texts) expect(text).not.toContain(secret);
  });
});
