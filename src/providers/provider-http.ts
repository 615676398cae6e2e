/**
 * Outbound HTTP for one provider: every call is bounded by the provider's `timeoutMs`, by the
 * caller's AbortSignal, and by `maxConcurrency`, and plain HTTP is refused except to loopback
 * hosts (test servers, the embedded sandbox). openid-client gets this as its `customFetch`, so
 * its requests obey the same bounds as the hand-written ones (Notion, YouTube, Graph) — and the
 * same observation: every request, whoever makes it, is reported once to the observer with the
 * provider, the endpoint it addressed and its outcome (the broker's metrics).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { withRequestIdHeader } from "../observability/request-context.js";

export type TransportFailureKind = "timeout" | "network" | "aborted" | "insecure_endpoint";

/** A request that never produced an HTTP response. Carries no URL query and no body. */
export class ProviderTransportError extends Error {
  override readonly name = "ProviderTransportError";
  readonly kind: TransportFailureKind;

  constructor(kind: TransportFailureKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
  }
}

/**
 * What a request was for, read from the request itself (see `classifyProviderRequest`) because
 * openid-client does not say which endpoint it is calling.
 */
export type ProviderEndpoint = "discovery" | "token" | "revocation" | "userinfo" | "jwks" | "other";

/** One request to a provider as the metrics see it: no URL, no header, no body. */
export interface ProviderHttpCall {
  readonly provider: string;
  readonly endpoint: ProviderEndpoint;
  /** The HTTP status code ("200", "400"), or the `TransportFailureKind` when no response came. */
  readonly status: string;
  /** Seconds from sending to the response headers (or the failure); absent when nothing was sent. */
  readonly seconds: number | undefined;
}

export type ProviderHttpObserver = (call: ProviderHttpCall) => void;

export interface ProviderHttpOptions {
  readonly providerId: string;
  readonly timeoutMs: number;
  readonly maxConcurrency: number;
  readonly fetch?: typeof fetch | undefined;
  /** Hosts besides loopback that may be reached over plain HTTP (the sandbox's own public host). */
  readonly insecureHosts?: readonly string[] | undefined;
  /** Hears every request; defaults to the observer `fetch` was made with by `observingFetch`. */
  readonly observe?: ProviderHttpObserver | undefined;
}

/** The subset of `RequestInit` openid-client passes to its `customFetch`. */
export interface ProviderRequestInit {
  readonly method?: string | undefined;
  readonly headers?: RequestInit["headers"];
  readonly body?: RequestInit["body"];
  readonly redirect?: RequestInit["redirect"];
  readonly signal?: AbortSignal | null | undefined;
}

export interface ProviderHttp {
  readonly timeoutMs: number;
  fetch(url: string, init?: ProviderRequestInit): Promise<Response>;
  /** Runs `fn` with `signal` applied to every request it makes (openid-client takes no per-call signal). */
  withSignal<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T>;
}

const observers = new WeakMap<typeof fetch, ProviderHttpObserver>();

/**
 * A fetch (the global one unless given) that carries `observe` to every provider client built
 * with it: provider clients receive their transport as `ProviderClientDeps.fetch`, so the broker
 * can observe all providers' requests by handing this to the provider registry.
 */
export function observingFetch(observe: ProviderHttpObserver, base?: typeof fetch): typeof fetch {
  // Resolved per call, so a fetch replaced after start-up (tests) is still the one used.
  const observed: typeof fetch = (input, init) => (base ?? globalThis.fetch)(input, init);
  observers.set(observed, observe);
  return observed;
}

/**
 * The endpoint a request addresses, from what the protocols put in it: discovery documents live
 * under `/.well-known/` (RFC 8414 §3, OIDC Discovery §4); token requests carry `grant_type`
 * (RFC 6749 §4.1.3, §6); revocation requests carry `token` and no `grant_type` (RFC 7009 §2.1);
 * key sets are asked for as `application/jwk-set+json`; a GET with a bearer token asks who the
 * token belongs to (OIDC userinfo, Graph /me, YouTube channels, Notion users/me).
 */
export function classifyProviderRequest(url: URL, init: ProviderRequestInit = {}): ProviderEndpoint {
  if (url.pathname.includes("/.well-known/")) return "discovery";
  const method = (init.method ?? "GET").toUpperCase();
  const headers = new Headers(init.headers);
  if (method === "POST") {
    const fields = bodyFields(init.body);
    if (fields.has("grant_type")) return "token";
    if (fields.has("token")) return "revocation";
    return "other";
  }
  if (method !== "GET") return "other";
  if (/^bearer\s/i.test(headers.get("authorization") ?? "")) return "userinfo";
  if ((headers.get("accept") ?? "").includes("jwk-set+json")) return "jwks";
  return "other";
}

/** Parameter names of a form or JSON body; values are never looked at. */
function bodyFields(body: ProviderRequestInit["body"]): Set<string> {
  if (body instanceof URLSearchParams) return new Set(body.keys());
  if (typeof body !== "string") return new Set();
  const text = body.trimStart();
  if (text.startsWith("{")) {
    try {
      const parsed: unknown = JSON.parse(text);
      return typeof parsed === "object" && parsed !== null ? new Set(Object.keys(parsed)) : new Set();
    } catch {
      return new Set();
    }
  }
  return new Set(new URLSearchParams(text).keys());
}

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]", "::1"]);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

export function createProviderHttp(options: ProviderHttpOptions): ProviderHttp {
  const baseFetch = options.fetch ?? globalThis.fetch;
  const callerSignal = new AsyncLocalStorage<AbortSignal | undefined>();
  const insecureHosts = new Set(options.insecureHosts ?? []);
  const semaphore = createSemaphore(Math.max(1, options.maxConcurrency));
  const observe = options.observe ?? (options.fetch === undefined ? undefined : observers.get(options.fetch));

  function report(endpoint: ProviderEndpoint, status: string, seconds?: number): void {
    if (observe === undefined) return;
    try {
      observe({ provider: options.providerId, endpoint, status, seconds });
    } catch {
      // Observation must never fail a provider call.
    }
  }

  function checkEndpoint(url: URL): void {
    if (url.protocol === "https:") return;
    if (url.protocol === "http:" && (isLoopbackHost(url.hostname) || insecureHosts.has(url.host))) return;
    throw new ProviderTransportError(
      "insecure_endpoint",
      `provider "${options.providerId}" endpoint ${url.origin} must use https (plain http is only allowed for loopback hosts)`,
    );
  }

  return {
    timeoutMs: options.timeoutMs,
    withSignal(signal, fn) {
      return callerSignal.run(signal, fn);
    },
    async fetch(url, init = {}) {
      const target = new URL(url);
      const endpoint = classifyProviderRequest(target, init);
      try {
        checkEndpoint(target);
      } catch (error) {
        report(endpoint, "insecure_endpoint");
        throw error;
      }
      const timeout = AbortSignal.timeout(options.timeoutMs);
      const caller = callerSignal.getStore();
      const signals = [timeout, caller, init.signal ?? undefined].filter((s): s is AbortSignal => s !== undefined);
      const signal = AbortSignal.any(signals);
      const describe = (): ProviderTransportError => {
        if (caller?.aborted === true) {
          return new ProviderTransportError("aborted", `call to provider "${options.providerId}" was cancelled`);
        }
        return new ProviderTransportError(
          "timeout",
          `provider "${options.providerId}" did not answer within ${options.timeoutMs} ms (${target.origin}${target.pathname})`,
        );
      };
      try {
        await semaphore.acquire(signal);
      } catch {
        const failure = describe();
        report(endpoint, failure.kind);
        throw failure;
      }
      // After the semaphore: the histogram measures the provider, not the queue in front of it.
      const started = performance.now();
      const elapsed = (): number => (performance.now() - started) / 1000;
      try {
        const response = await baseFetch(target, {
          method: init.method,
          // The provider can quote it back when asked about a failed token or revocation request.
          headers: withRequestIdHeader(init.headers),
          body: init.body,
          redirect: init.redirect ?? "manual",
          signal,
        });
        report(endpoint, String(response.status), elapsed());
        return response;
      } catch (error) {
        if (signal.aborted) {
          const failure = describe();
          report(endpoint, failure.kind, elapsed());
          throw failure;
        }
        report(endpoint, "network", elapsed());
        throw new ProviderTransportError(
          "network",
          `provider "${options.providerId}" could not be reached (${target.origin})`,
          { cause: networkCause(error) },
        );
      } finally {
        semaphore.release();
      }
    },
  };
}

/** Keeps the socket-level code (ECONNREFUSED, ENOTFOUND) for the log, nothing from the request. */
function networkCause(error: unknown): Error {
  const inner = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const code = typeof inner === "object" && inner !== null && "code" in inner ? String(inner.code) : undefined;
  return new Error(code ?? (inner instanceof Error ? inner.message : "fetch failed"));
}

interface Semaphore {
  acquire(signal: AbortSignal): Promise<void>;
  release(): void;
}

function createSemaphore(max: number): Semaphore {
  let active = 0;
  const waiting: Array<() => void> = [];
  return {
    acquire(signal) {
      if (signal.aborted) return Promise.reject(signal.reason);
      if (active < max) {
        active += 1;
        return Promise.resolve();
      }
      return new Promise<void>((resolve, reject) => {
        const grant = (): void => {
          signal.removeEventListener("abort", onAbort);
          active += 1;
          resolve();
        };
        const onAbort = (): void => {
          const index = waiting.indexOf(grant);
          if (index >= 0) waiting.splice(index, 1);
          reject(signal.reason);
        };
        waiting.push(grant);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    },
    release() {
      active -= 1;
      waiting.shift()?.();
    },
  };
}
