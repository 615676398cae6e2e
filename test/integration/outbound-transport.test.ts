/**
 * The transport under every provider and Vault request, against a real HTTP server: what `fetch`
 * promised those clients still holds (bodies and their content types, headers, statuses, redirects
 * not followed, a real `Response`), on pooled connections, with a bounded answer; and a network
 * failure still reads as one through the provider's HTTP bounds (provider-http.ts).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createProviderHttp, ProviderTransportError } from "../../src/providers/provider-http.js";
import { createOutboundTransport } from "../../src/http/outbound-transport.js";
import { freePort } from "../support/free-port.js";

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage["headers"];
  readonly body: string;
}

describe("the outbound transport", () => {
  let server: Server;
  let origin: string;
  const seen: Seen[] = [];
  const connections = new Set<unknown>();
  let connectionCount = 0;
  /** Requests to /hold wait here until the test lets them go. */
  const held: ServerResponse[] = [];
  const transport = createOutboundTransport({ maxResponseBytes: 64 * 1024 });

  beforeAll(async () => {
    server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        seen.push({ method: request.method ?? "", url: request.url ?? "", headers: request.headers, body: Buffer.concat(chunks).toString("utf8") });
        switch (request.url) {
          case "/token":
            response.writeHead(200, { "content-type": "application/json", "set-cookie": ["a=1", "b=2"] });
            response.end(JSON.stringify({ access_token: "at", token_type: "Bearer" }));
            return;
          case "/moved":
            response.writeHead(302, { location: "/token" });
            response.end();
            return;
          case "/empty":
            response.writeHead(204);
            response.end();
            return;
          case "/large":
            response.writeHead(200, { "content-type": "application/json" });
            response.end("x".repeat(65 * 1024));
            return;
          case "/gzip":
            response.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
            response.end(gzipSync("{}"));
            return;
          case "/hold":
            held.push(response);
            return;
          default:
            response.writeHead(400, { "content-type": "application/json" });
            response.end(JSON.stringify({ error: "invalid_request" }));
        }
      });
    });
    server.on("connection", (socket) => {
      connectionCount += 1;
      connections.add(socket);
      socket.on("close", () => connections.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const response of held) response.destroy();
    await transport.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("sends a form as fetch does and answers with a real Response", async () => {
    const response = await transport.fetch(`${origin}/token`, {
      method: "POST",
      headers: { accept: "application/json", "x-request-id": "req-1" },
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: "rt" }),
      redirect: "manual",
    });
    expect(response).toBeInstanceOf(Response);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.get("set-cookie")).toBe("a=1, b=2");
    expect(await response.clone().json()).toEqual({ access_token: "at", token_type: "Bearer" });
    expect(await response.text()).toContain("access_token");
    const request = seen.at(-1);
    expect(request?.method).toBe("POST");
    expect(request?.body).toBe("grant_type=refresh_token&refresh_token=rt");
    expect(request?.headers["content-type"]).toBe("application/x-www-form-urlencoded;charset=UTF-8");
    expect(request?.headers["x-request-id"]).toBe("req-1");
    expect(request?.headers["accept-encoding"]).toBe("identity");
  });

  it("sends a string body with the caller's content type, and reuses the pooled connection", async () => {
    const before = connectionCount;
    for (let i = 0; i < 3; i++) {
      const response = await transport.fetch(`${origin}/other`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"a":1}' });
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ error: "invalid_request" });
    }
    expect(seen.at(-1)?.headers["content-type"]).toBe("application/json");
    expect(seen.at(-1)?.body).toBe('{"a":1}');
    expect(connectionCount - before).toBeLessThanOrEqual(1);
  });

  it("never follows a redirect: manual returns it, error rejects it, follow is refused", async () => {
    const response = await transport.fetch(`${origin}/moved`, { redirect: "manual" });
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("/token");
    expect(seen.at(-1)?.url).toBe("/moved");
    const refused = await transport.fetch(`${origin}/moved`, { redirect: "error" }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(TypeError);
    expect((refused as TypeError).cause).toMatchObject({ code: "UNEXPECTED_REDIRECT" });
    expect(seen.at(-1)?.url).toBe("/moved");
    const before = seen.length;
    await expect(transport.fetch(`${origin}/moved`, { redirect: "follow" })).rejects.toThrow(/never follow redirects/);
    expect(seen).toHaveLength(before);
  });

  it("answers a bodiless status with no body", async () => {
    const response = await transport.fetch(`${origin}/empty`);
    expect(response.status).toBe(204);
    expect(response.body).toBeNull();
  });

  it("refuses an answer past its bound and one with a content coding it did not ask for", async () => {
    await expect(transport.fetch(`${origin}/large`)).rejects.toMatchObject({ code: "RESPONSE_TOO_LARGE" });
    await expect(transport.fetch(`${origin}/gzip`)).rejects.toMatchObject({ code: "RESPONSE_ENCODED" });
    // The connection the refused answer came on is not left broken for the next request.
    expect((await transport.fetch(`${origin}/token`)).status).toBe(200);
  });

  it("is cut by its signal", async () => {
    const controller = new AbortController();
    const pending = transport.fetch(`${origin}/hold`, { signal: controller.signal });
    await expect.poll(() => held.length).toBe(1);
    controller.abort();
    await expect(pending).rejects.toThrow();
  });

  it("under the provider's HTTP bounds, a refused connection is a network failure naming its code, nothing else", async () => {
    const http = createProviderHttp({ providerId: "p", timeoutMs: 5_000, maxConcurrency: 1, fetch: transport.fetch });
    const closedPort = await freePort();
    let failure: unknown;
    try {
      await http.fetch(`http://127.0.0.1:${closedPort}/token?code=secret-code`, { method: "POST", body: new URLSearchParams({ refresh_token: "secret-rt" }) });
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(ProviderTransportError);
    const transportError = failure as ProviderTransportError;
    expect(transportError.kind).toBe("network");
    expect((transportError.cause as Error).message).toBe("ECONNREFUSED");
    expect(JSON.stringify({ message: transportError.message, cause: (transportError.cause as Error).message })).not.toMatch(/secret/);
  });
});
