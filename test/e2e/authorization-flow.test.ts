/**
 * The whole broker as a process on the embedded default (embedded PostgreSQL, local keyring,
 * sandbox provider): a signed-in user's browser goes from StartAuthorization through the
 * sandbox's sign-in page and the broker's callback back to `return_to` with a stored,
 * encrypted integration; the state cannot be replayed; nothing secret reaches the output.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import type { BrokerProcess } from "../support/broker-process.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import { createBrowser } from "../support/peers/browser.js";
import { consentAtProvider, startAuthorization } from "../support/browser-flow.js";
import { freePort } from "../support/free-port.js";

describe("authorization flow against the broker process (embedded default, sandbox)", () => {
  let broker: BrokerProcess;
  let data: BrokerDataDir;
  let publicUrl: string;
  let userToken: string;
  let adminToken: string;

  beforeAll(async () => {
    data = await createBrokerDataDir("oauth-broker-e2e-authz", createLogger({ level: "silent" }));
    const port = await freePort();
    publicUrl = `http://127.0.0.1:${port}`;
    // The public URL must name the real port: it is the sandbox's issuer and the redirect URI.
    broker = await data.startBroker({ BROKER_HTTP_ADDR: `127.0.0.1:${port}`, BROKER_PUBLIC_URL: publicUrl }, 90_000);
    userToken = await data.token("alice", "user");
    adminToken = data.adminToken;
  }, 120_000);

  afterAll(async () => {
    if (broker !== undefined) expect(await broker.stop()).toBe(0);
    await data?.remove();
  });

  async function call(method: string, token: string, body: Record<string, unknown>) {
    const response = await fetch(`${broker.httpUrl}/oauthbroker.v1.${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, json: (await response.json()) as Record<string, unknown> };
  }

  it("connects a sandbox account from StartAuthorization to return_to, once", async () => {
    const browser = createBrowser();
    const started = await startAuthorization(broker.httpUrl, { authorization: `Bearer ${userToken}` }, { provider: "sandbox", scopes: ["sandbox.read"] }, browser);
    expect(started.headers.get("cache-control")).toBe("no-store");
    expect(started.setCookie).toMatch(/^oauth_broker_flow_sandbox=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Lax; Path=\/oauth\/callback\/sandbox; Max-Age=\d+$/);

    const { authorizationUrl } = started;
    expect(authorizationUrl.origin + authorizationUrl.pathname).toBe(`${publicUrl}/sandbox/auth`);
    const state = authorizationUrl.searchParams.get("state") ?? "";
    const callbackUrl = await consentAtProvider(authorizationUrl, { username: "newcomer" }, browser);
    expect(callbackUrl.origin + callbackUrl.pathname).toBe(`${publicUrl}/oauth/callback/sandbox`);
    const code = callbackUrl.searchParams.get("code") ?? "";

    const arrival = await browser.request(callbackUrl);
    expect(arrival.status).toBe(303);
    expect(arrival.headers.get("referrer-policy")).toBe("no-referrer");
    const location = new URL(arrival.headers.get("location") ?? "");
    expect(location.origin + location.pathname).toBe(`${publicUrl}/`);
    expect(location.searchParams.get("status")).toBe("connected");
    expect(location.searchParams.get("integration_id")).toMatch(/^[0-9a-f-]{36}$/);

    const status = await call("StatusService/GetStatus", adminToken, {});
    expect(status.status, JSON.stringify(status.json)).toBe(200);
    const sandbox = (status.json["providers"] as Array<Record<string, unknown>>).find((p) => p["provider"] === "sandbox");
    expect(sandbox?.["integrations"]).toEqual([{ status: "INTEGRATION_STATUS_ACTIVE", count: "1" }]);

    const replay = await browser.request(callbackUrl);
    expect(replay.status).toBe(400);

    // No state, code or binding value reached the process output.
    const binding = (started.setCookie ?? "").split(";")[0]?.split("=")[1] ?? "";
    for (const secret of [state, code, binding]) expect(broker.output()).not.toContain(secret);
  });
});
