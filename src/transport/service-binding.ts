/**
 * Wraps one `ServiceImpl` with the interceptor chain. Both listeners mount the wrapped
 * implementation, so every call — whichever port, whichever protocol — passes the same
 * request-id, logging, metrics, error-mapping, authentication and rate-limit steps.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { createContextKey, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { BrokerError } from "../domain/errors.js";
import type { Principal, RequestContext } from "../domain/types.js";
import type { CallContext, Interceptor, MethodKind } from "./call.js";

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
  if (!call.principal) throw new BrokerError("unauthenticated", "missing or invalid credentials");
  return { principal: call.principal, requestId: call.requestId, peer: call.peer, signal: call.signal, deadline: call.deadline };
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

function createCall(ctx: HandlerContext, shutdownSignal: AbortSignal): CallContext {
  const timeoutMs = ctx.timeoutMs();
  const call: CallContext = {
    service: ctx.service.typeName,
    method: ctx.method.name,
    methodKind: methodKindOf(ctx.method),
    protocol: ctx.protocolName,
    requestHeader: ctx.requestHeader,
    responseHeader: ctx.responseHeader,
    peer: ctx.values.get(peerKey),
    requestId: "",
    principal: ctx.values.get(certificatePrincipalKey),
    signal: AbortSignal.any([ctx.signal, shutdownSignal]),
    deadline: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
  };
  ctx.values.set(callKey, call);
  return call;
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
  for (const method of binding.service.methods) {
    const original = methodImpl(binding, method);
    if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
      wrapped[method.localName] = (input, ctx) =>
        runChain(interceptors, createCall(ctx, shutdownSignal), async () => original(input, ctx));
    } else {
      wrapped[method.localName] = (input, ctx) =>
        (async function* () {
          const call = createCall(ctx, shutdownSignal);
          const stream = await runChain(interceptors, call, async () => original(input, ctx) as AsyncIterable<unknown>);
          yield* stream;
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
