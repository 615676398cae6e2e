/**
 * The request id of the work in progress, carried by `AsyncLocalStorage` rather than passed down:
 * the request-id interceptor opens one context per RPC, background jobs open their own, and
 * everything that runs inside — domain code, the provider and Vault clients, every log line
 * (the logger's `mixin`) — reads it from here. Domain code therefore needs no parameter for it.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";

export interface RequestContextStore {
  readonly requestId: string;
  /** Full method name of the RPC, when the work is a call. */
  readonly method?: string | undefined;
  /** Name of the background job, when the work is not a call. */
  readonly job?: string | undefined;
}

/** The header outbound calls carry the id in (providers and Vault both accept arbitrary headers). */
export const REQUEST_ID_HEADER = "x-request-id";

/** What an incoming `x-request-id` must look like to be adopted rather than replaced. */
export const ACCEPTABLE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

const storage = new AsyncLocalStorage<RequestContextStore>();

export function runWithRequestContext<T>(store: RequestContextStore, fn: () => T): T {
  return storage.run(store, fn);
}

export function currentRequestContext(): RequestContextStore | undefined {
  return storage.getStore();
}

/**
 * Runs one unit of background work (a refresh pass item, a re-wrap batch) under a fresh id, so
 * its log lines and outbound calls can be correlated like a call's.
 */
export function runInBackgroundContext<T>(job: string, fn: () => T): T {
  return storage.run({ requestId: randomUUID(), job }, fn);
}

/**
 * The id an outbound request carries: the current one, or a fresh one for work that runs outside
 * any context (a provider still sees one id per request it can quote back to us).
 */
export function outboundRequestId(): string {
  return storage.getStore()?.requestId ?? randomUUID();
}

/**
 * `headers` plus `x-request-id` (unless already set): the id of the current call or job, or a
 * fresh one. Accepts every form `fetch` takes.
 */
export function withRequestIdHeader(headers: RequestInit["headers"]): Headers {
  const merged = new Headers(headers);
  if (!merged.has(REQUEST_ID_HEADER)) merged.set(REQUEST_ID_HEADER, outboundRequestId());
  return merged;
}

/**
 * A response stream whose every step runs inside `store`. Async generators take the context of
 * whoever calls `next()` (the listener), not of whoever created them, so without this the log
 * lines a streaming handler writes between messages would lose the call's id.
 */
export function bindStreamToContext<T>(stream: AsyncIterable<T>, store: RequestContextStore): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const iterator = storage.run(store, () => stream[Symbol.asyncIterator]());
      const bound: AsyncIterator<T> = {
        next: (...args: [] | [unknown]) => storage.run(store, () => iterator.next(...args)),
      };
      const { return: finish, throw: fail } = iterator;
      if (finish !== undefined) bound.return = (value?: unknown) => storage.run(store, () => finish.call(iterator, value));
      if (fail !== undefined) bound.throw = (error?: unknown) => storage.run(store, () => fail.call(iterator, error));
      return bound;
    },
  };
}
