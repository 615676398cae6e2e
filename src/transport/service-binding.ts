/**
 * Wraps one `ServiceImpl` with the interceptor chain. Both listeners mount the wrapped
 * implementation, so every call — whichever port, whichever protocol — passes the same
 * request-id, logging, metrics, error-mapping, authentication and rate-limit steps.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createContextKey, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { BrokerError } from "../domain/errors.js";
import type { Principal, RequestContext } from "../domain/types.js";
import type { CallContext, CallHeaders, Interceptor, MethodKind } from "./call.js";
import { RequestRefusal } from "./request-refusal.js";

/** A service and its implementation, as handed to the listeners. */
export interface ServiceBinding {
  readonly service: DescService;
  readonly impl: ServiceImpl<DescService>;
}

export function bindService<S extends DescService>(service: S, impl: ServiceImpl<S>): ServiceBinding {
  return { service, impl: impl as unknown as ServiceImpl<DescService> };
}

/** Set by each listener: the remote address of the caller. */
export const peerKey = createContextKey<string>("unknown");
/** Set by the gRPC listener under mutual TLS: the service a verified client certificate names. */
export const certificatePrincipalKey = createContextKey<Principal | undefined>(undefined);
/** Set by a listener that has its own view of the call's headers (the gRPC listener). */
export const callHeadersKey = createContextKey<CallHeaders | undefined>(undefined);
/** Set by the HTTP listener when it refused the body itself; the handler's input is then a stand-in. */
export const requestRefusalKey = createContextKey<RequestRefusal | undefined>(undefined);
const callKey = createContextKey<CallContext | undefined>(undefined);

/** The call context of the current RPC, for handlers that need the principal or request id. */
export function callOf(ctx: HandlerContext): CallContext {
  const call = ctx.values.get(callKey);
  if (!call) throw new Error(`no call context for ${ctx.service.typeName}/${ctx.method.name}`);
  return call;
}

/** The domain's view of the call: who asks (authenticated), request id, peer, deadline. */
export function requestContextOf(ctx: HandlerContext): RequestContext {
  const call = callOf(ctx);
  const principal = call.principal;
  if (!principal) throw new BrokerError("unauthenticated", "missing or invalid credentials");
  return {
    principal,
    requestId: call.requestId,
    peer: call.peer,
    deadline: call.deadline,
    // Read only where a wait may need cutting short (a refresh): see createCall.
    get signal() {
      return call.signal;
    },
  };
}

type AnyMethodImpl = (input: unknown, ctx: HandlerContext) => unknown;

export function methodImpl(binding: ServiceBinding, method: DescMethod): AnyMethodImpl {
  const impl = (binding.impl as unknown as Record<string, AnyMethodImpl | undefined>)[method.localName];
  if (!impl) throw new Error(`${binding.service.typeName} has no implementation for ${method.name}`);
  return impl;
}

function methodKindOf(method: DescMethod): MethodKind {
  switch (method.methodKind) {
    case "unary":
      return "unary";
    case "server_streaming":
      return "server_streaming";
    case "client_streaming":
      return "client_streaming";
    default:
      return "bidi_streaming";
  }
}

/**
 * Aborts the signals calls have taken when the broker shuts down. Calls register here rather
 * than listen on the shared shutdown signal: on Node 20 every `AbortSignal.any()` over a
 * long-lived signal leaves a reference behind in it (about 50 bytes per call, never freed).
 */
interface ShutdownLink {
  readonly signal: AbortSignal;
  readonly live: Set<AbortController>;
}

function linkShutdown(signal: AbortSignal): ShutdownLink {
  const live = new Set<AbortController>();
  signal.addEventListener(
    "abort",
    () => {
      for (const controller of live) controller.abort(signal.reason);
      live.clear();
    },
    { once: true },
  );
  return { signal, live };
}

/**
 * The call context. Its `signal` (caller cancelled, deadline passed, call ended, broker shutting
 * down) is made the first time it is read: most unary calls never wait on anything that needs
 * it, and making one per call was a measurable share of a warm GetAccessToken. `done` unlinks it.
 */
function createCall(ctx: HandlerContext, shutdown: ShutdownLink, input: unknown): { call: CallContext; done: () => void } {
  const timeoutMs = ctx.timeoutMs();
  let controller: AbortController | undefined;
  let finished = false;
  const headers = ctx.values.get(callHeadersKey);
  const methodKind = methodKindOf(ctx.method);
  const singleRequest = methodKind === "unary" || methodKind === "server_streaming";
  // The gRPC listener's deserializer hands a refusal over as the message itself (grpc-adapter.ts).
  const refusal = input instanceof RequestRefusal ? input : ctx.values.get(requestRefusalKey);
  const call: CallContext = {
    service: ctx.service.typeName,
    method: ctx.method.name,
    methodKind,
    protocol: ctx.protocolName,
    requestHeader: headers?.request ?? ctx.requestHeader,
    responseHeader: headers?.response ?? ctx.responseHeader,
    peer: ctx.values.get(peerKey),
    requestId: "",
    principal: ctx.values.get(certificatePrincipalKey),
    get signal() {
      if (controller === undefined) {
        const own = new AbortController();
        controller = own;
        const source = ctx.signal;
        if (source.aborted) own.abort(source.reason);
        else if (shutdown.signal.aborted) own.abort(shutdown.signal.reason);
        else {
          source.addEventListener("abort", () => own.abort(source.reason), { once: true });
          // Taken after the chain finished: nothing would unlink it again.
          if (!finished) shutdown.live.add(own);
        }
      }
      return controller.signal;
    },
    deadline: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
    request: singleRequest && refusal === undefined ? { schema: ctx.method.input, message: input } : undefined,
    refusal: refusal?.error,
  };
  ctx.values.set(callKey, call);
  return {
    call,
    done: () => {
      finished = true;
      if (controller !== undefined) shutdown.live.delete(controller);
    },
  };
}

function runChain<R>(interceptors: readonly Interceptor[], call: CallContext, invoke: () => Promise<R>): Promise<R> {
  const step = (index: number): Promise<R> => {
    const interceptor = interceptors[index];
    return interceptor ? interceptor(call, () => step(index + 1)) : invoke();
  };
  return step(0);
}

/**
 * Returns an implementation of the same service whose every method runs `interceptors`
 * (outermost first) around the original. `shutdownSignal` aborts long-lived streams on drain.
 */
export function interceptBinding(
  binding: ServiceBinding,
  interceptors: readonly Interceptor[],
  shutdownSignal: AbortSignal,
): ServiceBinding {
  const wrapped: Record<string, AnyMethodImpl> = {};
  const shutdown = linkShutdown(shutdownSignal);
  for (const method of binding.service.methods) {
    const original = methodImpl(binding, method);
    if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
      wrapped[method.localName] = (input, ctx) => {
        const { call, done } = createCall(ctx, shutdown, input);
        return invokeSafely(() => runChain(interceptors, call, () => Promise.resolve(original(input, ctx)))).then(
          (result) => {
            done();
            return result;
          },
          (error: unknown) => {
            done();
            throw error;
          },
        );
      };
    } else {
      wrapped[method.localName] = (input, ctx) =>
        (async function* () {
          const { call, done } = createCall(ctx, shutdown, input);
          try {
            const stream = await runChain(interceptors, call, async () => original(input, ctx) as AsyncIterable<unknown>);
            yield* stream;
          } finally {
            done();
          }
        })();
    }
  }
  return { service: binding.service, impl: wrapped as unknown as ServiceImpl<DescService> };
}

/**
 * Wraps a response stream so that `onEnd` learns how it finished and errors can be translated
 * as they surface mid-stream.
 */
export async function* observeStream<T>(
  stream: AsyncIterable<T>,
  hooks: { onError?: (error: unknown) => unknown; onEnd?: (error: unknown) => void },
): AsyncGenerator<T> {
  let failure: unknown = undefined;
  try {
    yield* stream;
  } catch (error) {
    failure = hooks.onError ? hooks.onError(error) : error;
    throw failure;
  } finally {
    hooks.onEnd?.(failure);
  }
}

/**
 * `invoke()`, with a synchronous throw turned into a rejection. Interceptors are plain functions
 * (an `async` wrapper per interceptor per call was a measurable part of a warm GetAccessToken,
 * bench/warm-path.ts), so one that refuses a call may throw before returning a promise.
 */
export function invokeSafely<R>(invoke: () => Promise<R>): Promise<R> {
  try {
    return invoke();
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Runs `invoke` and passes every failure through `handle` (which returns what to throw instead),
 * whether the call fails before answering or, for a response stream, in the middle of it.
 */
export function handleFailures<R>(call: CallContext, invoke: () => Promise<R>, handle: (error: unknown) => unknown): Promise<R> {
  const streams = call.methodKind === "server_streaming" || call.methodKind === "bidi_streaming";
  return invokeSafely(invoke).then(
    streams ? (result) => observeStream(result as AsyncIterable<unknown>, { onError: handle }) as R : undefined,
    (error: unknown) => {
      throw handle(error);
    },
  );
}
