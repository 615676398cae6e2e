/** Bounds on outbound provider calls: HTTPS except loopback, timeout, cancellation, concurrency. */
import { describe, expect, it } from "vitest";
import { createProviderHttp, ProviderTransportError } from "../../src/providers/provider-http.js";
import { awaitedLater } from "../support/wait-until.js";

/** A fetch that never answers until its signal aborts. */
const hangingFetch = ((_url: URL, init?: RequestInit) =>
  new Promise<Response>((_resolve, reject) => {
    if (init?.signal?.aborted === true) reject(init.signal.reason);
    init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
  })) as typeof fetch;

async function transportFailure(promise: Promise<unknown>): Promise<ProviderTransportError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ProviderTransportError) return error;
    throw error;
  }
  throw new Error("expected a ProviderTransportError");
}

describe("createProviderHttp", () => {
  it("refuses plain HTTP except to loopback hosts and the allowed ones", async () => {
    const seen: string[] = [];
    const fetch = (async (url: URL) => {
      seen.push(url.href);
      return new Response("{}");
    }) as typeof globalThis.fetch;
    const http = createProviderHttp({ providerId: "p", timeoutMs: 1000, maxConcurrency: 2, fetch, insecureHosts: ["broker.internal:8080"] });
    expect((await transportFailure(http.fetch("http://provider.example/token"))).kind).toBe("insecure_endpoint");
    await http.fetch("http://127.0.0.1:9/token");
    await http.fetch("http://localhost/token");
    await http.fetch("http://[::1]:8/token");
    await http.fetch("http://broker.internal:8080/sandbox/token");
    await http.fetch("https://provider.example/token");
    expect(seen).toHaveLength(5);
  });

  it("times out after timeoutMs", async () => {
    // The fetch never settles: only the timeout can end the call, however late its timer runs.
    const http = createProviderHttp({ providerId: "p", timeoutMs: 50, maxConcurrency: 1, fetch: hangingFetch });
    const error = await transportFailure(http.fetch("https://p.example/token"));
    expect(error.kind).toBe("timeout");
  });

  it("distinguishes the caller's cancellation from a timeout", async () => {
    const http = createProviderHttp({ providerId: "p", timeoutMs: 5_000, maxConcurrency: 1, fetch: hangingFetch });
    const controller = new AbortController();
    const pending = http.withSignal(controller.signal, () => http.fetch("https://p.example/token"));
    controller.abort();
    expect((await transportFailure(pending)).kind).toBe("aborted");
  });

  it("maps network failures without the request details", async () => {
    const fetch = (async () => {
      throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });
    }) as typeof globalThis.fetch;
    const http = createProviderHttp({ providerId: "p", timeoutMs: 1000, maxConcurrency: 1, fetch });
    const error = await transportFailure(http.fetch("https://p.example/token?code=secret-code"));
    expect(error.kind).toBe("network");
    expect(error.message).not.toContain("secret-code");
    expect(String(error.cause)).toContain("ECONNREFUSED");
  });

  it("runs at most maxConcurrency requests at once", async () => {
    let active = 0;
    let peak = 0;
    const fetch = (async () => {
      active += 1;
      peak = Math.max(peak, active);
      await new Promise((resolve) => setTimeout(resolve, 20));
      active -= 1;
      return new Response("{}");
    }) as typeof globalThis.fetch;
    // The timeout counts the wait for a slot too: one no loaded machine's queue approaches.
    const http = createProviderHttp({ providerId: "p", timeoutMs: 20_000, maxConcurrency: 2, fetch });
    await Promise.all(Array.from({ length: 6 }, () => http.fetch("https://p.example/x")));
    expect(peak).toBe(2);
  });

  it("times out while waiting for a concurrency slot", async () => {
    const http = createProviderHttp({ providerId: "p", timeoutMs: 50, maxConcurrency: 1, fetch: hangingFetch });
    const first = transportFailure(http.fetch("https://p.example/a"));
    const second = awaitedLater(transportFailure(http.fetch("https://p.example/b")));
    expect((await first).kind).toBe("timeout");
    expect((await second).kind).toBe("timeout");
  });
});
