/**
 * The provider HTTP metrics hook: every request through provider-http is reported once, with the
 * endpoint read from the request (openid-client does not name it) and the HTTP status or the
 * transport failure; the observer reaches provider clients through the fetch they are given.
 */
import { describe, expect, it } from "vitest";
import {
  classifyProviderRequest,
  createProviderHttp,
  observingFetch,
  type ProviderHttpCall,
} from "../../src/providers/provider-http.js";
import { awaitedLater } from "../support/wait-until.js";

const answering = (status: number): typeof fetch => (async () => new Response("{}", { status })) as typeof fetch;

describe("classifyProviderRequest", () => {
  const url = new URL("https://idp.example/oauth2/token");

  it("names discovery, token, revocation, userinfo and key set requests as openid-client sends them", () => {
    expect(classifyProviderRequest(new URL("https://idp.example/realms/x/.well-known/openid-configuration"))).toBe("discovery");
    expect(classifyProviderRequest(new URL("https://idp.example/.well-known/oauth-authorization-server/tenant"), { method: "GET" })).toBe("discovery");
    const grant = new URLSearchParams({ grant_type: "refresh_token", refresh_token: "rt", client_id: "c" });
    expect(classifyProviderRequest(url, { method: "POST", body: grant })).toBe("token");
    const code = new URLSearchParams({ grant_type: "authorization_code", code: "x", token: "irrelevant" });
    expect(classifyProviderRequest(url, { method: "POST", body: code })).toBe("token");
    const revoke = new URLSearchParams({ token: "rt", token_type_hint: "refresh_token" });
    expect(classifyProviderRequest(new URL("https://idp.example/revoke"), { method: "POST", body: revoke })).toBe("revocation");
    expect(classifyProviderRequest(new URL("https://idp.example/me"), { method: "GET", headers: { authorization: "Bearer at" } })).toBe("userinfo");
    expect(
      classifyProviderRequest(new URL("https://idp.example/certs"), { method: "GET", headers: new Headers({ accept: "application/json, application/jwk-set+json" }) }),
    ).toBe("jwks");
  });

  it("reads JSON and form-encoded string bodies (Notion, hand-written calls)", () => {
    expect(classifyProviderRequest(url, { method: "POST", body: JSON.stringify({ grant_type: "authorization_code", code: "c" }) })).toBe("token");
    expect(classifyProviderRequest(url, { method: "POST", body: JSON.stringify({ token: "t" }) })).toBe("revocation");
    expect(classifyProviderRequest(url, { method: "POST", body: "grant_type=refresh_token&refresh_token=x" })).toBe("token");
    expect(classifyProviderRequest(url, { method: "post", body: "token=x" })).toBe("revocation");
  });

  it("calls everything else other", () => {
    expect(classifyProviderRequest(url, { method: "POST", body: "{not json" })).toBe("other");
    expect(classifyProviderRequest(url, { method: "POST", body: JSON.stringify(["grant_type"]) })).toBe("other");
    expect(classifyProviderRequest(url, { method: "POST" })).toBe("other");
    expect(classifyProviderRequest(url, { method: "DELETE", headers: { authorization: "Bearer at" } })).toBe("other");
    expect(classifyProviderRequest(url)).toBe("other");
  });
});

describe("createProviderHttp observation", () => {
  it("reports each response with its status and a duration", async () => {
    const calls: ProviderHttpCall[] = [];
    const http = createProviderHttp({ providerId: "p", timeoutMs: 1000, maxConcurrency: 1, fetch: answering(400), observe: (c) => calls.push(c) });
    const response = await http.fetch("https://p.example/token", { method: "POST", body: new URLSearchParams({ grant_type: "refresh_token" }) });
    expect(response.status).toBe(400);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ provider: "p", endpoint: "token", status: "400" });
    expect(calls[0]?.seconds).toBeGreaterThanOrEqual(0);
  });

  it("reports transport failures by kind, without a duration when nothing was sent", async () => {
    const calls: ProviderHttpCall[] = [];
    const observe = (c: ProviderHttpCall) => calls.push(c);
    const refusing = (async () => {
      throw new TypeError("fetch failed");
    }) as typeof fetch;
    const hanging = ((_url: URL, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)))) as typeof fetch;

    await createProviderHttp({ providerId: "p", timeoutMs: 1000, maxConcurrency: 1, fetch: refusing, observe })
      .fetch("https://p.example/me", { headers: { authorization: "Bearer at" } })
      .catch(() => undefined);
    await createProviderHttp({ providerId: "p", timeoutMs: 30, maxConcurrency: 1, fetch: hanging, observe })
      .fetch("https://p.example/.well-known/openid-configuration")
      .catch(() => undefined);
    await createProviderHttp({ providerId: "p", timeoutMs: 1000, maxConcurrency: 1, fetch: refusing, observe })
      .fetch("http://p.example/token", { method: "POST", body: "grant_type=x" })
      .catch(() => undefined);

    expect(calls.map(({ endpoint, status }) => `${endpoint} ${status}`)).toEqual(["userinfo network", "discovery timeout", "token insecure_endpoint"]);
    expect(calls[0]?.seconds).toBeGreaterThanOrEqual(0);
    expect(calls[1]?.seconds).toBeGreaterThanOrEqual(0.02);
    expect(calls[2]?.seconds).toBeUndefined();
  });

  it("reports a request that timed out while queued behind the concurrency limit, without a duration", async () => {
    const calls: ProviderHttpCall[] = [];
    let release: (() => void) | undefined;
    const slow = (() => new Promise<Response>((resolve) => (release = () => resolve(new Response("{}"))))) as typeof fetch;
    const http = createProviderHttp({ providerId: "p", timeoutMs: 50, maxConcurrency: 1, fetch: slow, observe: (c) => calls.push(c) });
    const first = awaitedLater(http.fetch("https://p.example/token", { method: "POST", body: "grant_type=x" }));
    await expect(http.fetch("https://p.example/token", { method: "POST", body: "grant_type=x" })).rejects.toMatchObject({ kind: "timeout" });
    release?.();
    await first;
    expect(calls.map(({ status, seconds }) => [status, seconds === undefined])).toEqual([
      ["timeout", true],
      ["200", false],
    ]);
  });

  it("takes the observer from a fetch made by observingFetch, and never fails a call because of it", async () => {
    const seen: string[] = [];
    const fetch = observingFetch((call) => {
      seen.push(`${call.provider} ${call.endpoint} ${call.status}`);
      throw new Error("a broken observer");
    }, answering(200));
    const http = createProviderHttp({ providerId: "google", timeoutMs: 1000, maxConcurrency: 1, fetch });
    expect((await http.fetch("https://oauth2.example/revoke", { method: "POST", body: new URLSearchParams({ token: "t" }) })).status).toBe(200);
    expect(seen).toEqual(["google revocation 200"]);
  });

  it("observes nothing through a fetch that was not made by observingFetch", async () => {
    const seen: ProviderHttpCall[] = [];
    const base = answering(202);
    observingFetch((call) => seen.push(call), base);
    const http = createProviderHttp({ providerId: "p", timeoutMs: 1000, maxConcurrency: 1, fetch: base });
    expect((await http.fetch("https://p.example/x")).status).toBe(202);
    expect(seen).toEqual([]);
  });
});
