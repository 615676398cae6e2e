/**
 * The sandbox provider mounted under an HTTP server, as the broker mounts it, and the `sandbox`
 * provider client built by the registry: sign-in page, code exchange, rotation, revocation.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomNonce, randomPKCECodeVerifier, randomState } from "openid-client";
import type { ProviderClient } from "../../src/domain/ports.js";
import { createProviderRegistry, providerRedirectUri } from "../../src/providers/provider-registry.js";
import { createSandboxProvider, type SandboxProvider } from "../../src/providers/sandbox-provider.js";
import { createBrowser, driveConsent } from "../support/peers/browser.js";
import { testProviderConfig } from "../support/peers/provider-config.js";
import { captureLogger } from "../support/log-capture.js";
import { caught } from "../support/caught.js";


describe("sandbox provider", () => {
  let server: Server;
  let sandbox: SandboxProvider;
  let client: ProviderClient;
  let publicUrl: URL;
  let redirectUri: string;
  const { logger, log } = captureLogger();

  beforeAll(async () => {
    // Requests arrive only once the sandbox exists: the server's address is needed to create it.
    server = createServer((req, res) => {
      if (sandbox.handle(req, res)) return;
      res.statusCode = 404;
      res.end("not the sandbox");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    publicUrl = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    redirectUri = providerRedirectUri(publicUrl, "sandbox");
    sandbox = await createSandboxProvider({ publicUrl, redirectUri, logger });
    const registry = await createProviderRegistry(
      [testProviderConfig({ id: "sandbox", kind: "sandbox", clientId: undefined, defaultScopes: ["sandbox.read"] })],
      { publicUrl, sandbox, logger },
    );
    const found = registry.get("sandbox");
    if (found === undefined) throw new Error("sandbox client missing");
    client = found;
  });

  afterAll(async () => {
    await sandbox.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function connect(username: string, scopes: readonly string[]) {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const nonce = randomNonce();
    const url = await client.authorizationUrl({ state, scopes, redirectUri, codeVerifier, nonce });
    const callbackUrl = await driveConsent(url, { username });
    return client.exchangeCode({ callbackUrl, expectedState: state, redirectUri, codeVerifier, nonce, requestedScopes: scopes });
  }

  it("serves its issuer under /sandbox and leaves other paths alone", async () => {
    expect(sandbox.issuer).toBe(`${publicUrl.origin}/sandbox`);
    const discovery = (await (await fetch(`${sandbox.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(discovery["issuer"]).toBe(sandbox.issuer);
    expect(discovery["token_endpoint"]).toBe(`${sandbox.issuer}/token`);
    expect(discovery["revocation_endpoint"]).toBe(`${sandbox.issuer}/token/revocation`);
    expect((await fetch(`${publicUrl.origin}/sandboxed`)).status).toBe(404);
    expect((await fetch(`${publicUrl.origin}/healthz`)).status).toBe(404);
    expect(JSON.stringify(sandbox.clientSecret)).toBe('"[redacted]"');
    expect(String(sandbox.clientSecret)).toBe("[redacted]");
  });

  it("shows a self-contained sign-in page with a restrictive policy", async () => {
    const url = await client.authorizationUrl({ state: randomState(), scopes: ["sandbox.read"], redirectUri, codeVerifier: randomPKCECodeVerifier() });
    const browser = createBrowser();
    const first = await browser.request(url);
    expect(first.status).toBe(303);
    const page = await browser.request(new URL(first.headers.get("location") ?? "", url));
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(page.headers.get("cache-control")).toBe("no-store");
    const html = await page.text();
    expect(html).toContain('name="username"');
    // The consent card lists every scope asked, the ones the broker adds included.
    const listed = [...html.matchAll(/<li><code>([^<]+)<\/code><\/li>/g)].map((m) => m[1]);
    expect(listed).toEqual(["sandbox.read", "openid", "offline_access"]);
    expect(html).not.toMatch(/(src|href)="https?:/);
  });

  it("signs in any user name and returns tokens with a 5-minute access token", async () => {
    const grant = await connect("newcomer", ["sandbox.read", "email"]);
    expect(grant.account).toEqual({
      id: "newcomer",
      name: "newcomer@sandbox.invalid",
      attributes: { email: "newcomer@sandbox.invalid" },
    });
    // The sandbox advertises offline_access, so the broker asks for it: the grant is refreshable.
    expect([...grant.tokens.scopes].sort()).toEqual(["email", "offline_access", "openid", "sandbox.read"]);
    expect(grant.tokens.refreshToken).toBeDefined();
    const lifetime = grant.tokens.expiresAt.getTime() - Date.now();
    expect(lifetime).toBeGreaterThan(290_000);
    expect(lifetime).toBeLessThanOrEqual(300_000);
    await expect(client.fetchAccount?.(grant.tokens.accessToken)).resolves.toMatchObject({ id: "newcomer" });
  });

  it("rotates refresh tokens; replaying one revokes the grant", async () => {
    const grant = await connect("rotator", ["sandbox.read"]);
    const original = grant.tokens.refreshToken ?? "";
    const refreshed = await client.refresh(original);
    expect(refreshed.tokens.refreshToken).toBeDefined();
    expect(refreshed.tokens.refreshToken).not.toBe(original);
    expect((await caught(client.refresh(original))).code).toBe("integration_needs_reauth");
    expect((await caught(client.refresh(refreshed.tokens.refreshToken ?? ""))).code).toBe("integration_needs_reauth");
  });

  it("revokes a refresh token", async () => {
    const grant = await connect("leaver", []);
    await expect(client.revoke(grant.tokens.refreshToken ?? "", "refresh_token")).resolves.toEqual({ outcome: "revoked" });
    expect((await caught(client.refresh(grant.tokens.refreshToken ?? ""))).code).toBe("integration_needs_reauth");
  });

  it("lets the user deny, and rejects user names it cannot use", async () => {
    const state = randomState();
    const codeVerifier = randomPKCECodeVerifier();
    const url = await client.authorizationUrl({ state, scopes: [], redirectUri, codeVerifier });
    const callbackUrl = await driveConsent(url, { username: "x", deny: true });
    const denied = await caught(client.exchangeCode({ callbackUrl, expectedState: state, redirectUri, codeVerifier, requestedScopes: [] }));
    expect(denied.code).toBe("authorization_denied");

    await expect(driveConsent(await client.authorizationUrl({ state, scopes: [], redirectUri, codeVerifier }), { username: "<script>" })).rejects.toThrow(/HTTP 400/);
  });

  it("never logs the client secret", () => {
    const secret = sandbox.clientSecret.reveal();
    expect(secret.length).toBeGreaterThanOrEqual(40);
    expect(log.text()).not.toContain(secret);
  });
});
