/**
 * Outbound HTTP for one provider: every call is bounded by the provider's `timeoutMs`, by the
 * caller's AbortSignal, and by `maxConcurrency`, and plain HTTP is refused except to loopback
 * hosts (test servers, the embedded sandbox). openid-client gets this as its `customFetch`, so
 * its requests obey the same bounds as the hand-written ones (Notion, YouTube, Graph).
 */
import { AsyncLocalStorage } from "node:async_hooks";

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

export interface ProviderHttpOptions {
  readonly providerId: string;
  readonly timeoutMs: number;
  readonly maxConcurrency: number;
  readonly fetch?: typeof fetch | undefined;
  /** Hosts besides loopback that may be reached over plain HTTP (the sandbox's own public host). */
  readonly insecureHosts?: readonly string[] | undefined;
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

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]", "::1"]);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

export function createProviderHttp(options: ProviderHttpOptions): ProviderHttp {
  const baseFetch = options.fetch ?? globalThis.fetch;
  const callerSignal = new AsyncLocalStorage<AbortSignal | undefined>();
  const insecureHosts = new Set(options.insecureHosts ?? []);
  const semaphore = createSemaphore(Math.max(1, options.maxConcurrency));

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
      checkEndpoint(target);
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
        throw describe();
      }
      try {
        return await baseFetch(target, {
          method: init.method,
          headers: init.headers,
          body: init.body,
          redirect: init.redirect ?? "manual",
          signal,
        });
      } catch (error) {
        if (signal.aborted) throw describe();
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
