/**
 * The transport-neutral view of one RPC. Both listeners (grpc-js and connect-node) build a
 * `CallContext` and run the same interceptor chain around the same handler, so authentication,
 * logging, metrics and error mapping behave identically whichever port a caller uses.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import type { BrokerError } from "../domain/errors.js";
import type { Principal } from "../domain/types.js";

export type MethodKind = "unary" | "server_streaming" | "client_streaming" | "bidi_streaming";

/**
 * What the chain reads of the request's headers. A fetch `Headers` is one; the gRPC listener
 * reads its metadata directly instead of copying every call's metadata into a `Headers`.
 */
export interface HeaderReader {
  /** The value, several values joined by ", " (as `Headers.get` does), or null. */
  get(name: string): string | null;
}

/** What the chain and the handlers write of the response's headers. */
export interface HeaderWriter {
  set(name: string, value: string): void;
}

/** Set by a listener that reads and writes headers without `Headers` (see grpc-adapter.ts). */
export interface CallHeaders {
  readonly request: HeaderReader;
  readonly response: HeaderWriter;
}

export interface CallContext {
  /** Fully-qualified service name, e.g. `oauthbroker.v1.TokenService`. */
  readonly service: string;
  /** Method name, e.g. `GetAccessToken`. */
  readonly method: string;
  readonly methodKind: MethodKind;
  /** "grpc" (grpc-js listener), or "connect" / "grpc-web" / "grpc" on the HTTP listener. */
  readonly protocol: string;
  /** Request metadata with lower-case keys (`authorization`, `x-request-id`, ...). */
  readonly requestHeader: HeaderReader;
  /** Headers to send with the response (for example `cache-control`). */
  readonly responseHeader: HeaderWriter;
  /** Remote address, "ip:port". */
  readonly peer: string;
  /** Echoed to the caller as `x-request-id` and present on every log line of the call. */
  requestId: string;
  /** Set by the authentication interceptor; undefined for open methods (health, reflection). */
  principal: Principal | undefined;
  /** Aborted when the caller cancels or the deadline passes. */
  readonly signal: AbortSignal;
  /** Absolute deadline (ms since epoch) from `grpc-timeout` / `connect-timeout-ms`, if any. */
  readonly deadline: number | undefined;
  /** The request message of a unary or server-streaming call; undefined for request streams. */
  readonly request?: { readonly schema: DescMessage; readonly message: unknown } | undefined;
  /** Set when the listener refused the request body (too large, undecodable): thrown after authentication. */
  readonly refusal?: BrokerError | undefined;
}

/** The handler part of a call: a response (unary) or a stream of responses. */
export type Invoke<R> = () => Promise<R>;

/**
 * Wraps the invocation of a handler. Interceptors run outermost first; they may short-circuit by
 * rejecting (a `BrokerError` becomes a proper status). They need not be `async`: one that only
 * checks something returns `invoke()` itself, which spares every call a promise per interceptor. For streaming methods `R` is an
 * `AsyncIterable`, and an interceptor that needs the end of the stream wraps the iterable.
 */
export type Interceptor = <R>(call: CallContext, invoke: Invoke<R>) => Promise<R>;

export function fullMethodName(call: Pick<CallContext, "service" | "method">): string {
  return `${call.service}/${call.method}`;
}
