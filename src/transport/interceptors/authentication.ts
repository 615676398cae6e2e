/**
 * Authenticates every call and checks the caller may call the method, before any handler runs.
 * Open services (health, reflection) skip both: load balancers and grpcurl must reach them
 * without credentials, and they hold no business data.
 */
import type { Authenticator } from "../../auth/authenticator.js";
import type { PolicyHolder } from "../../domain/policy.js";
import type { Principal } from "../../domain/types.js";
import { fullMethodName, type CallContext, type Interceptor } from "../call.js";
import type { RpcPolicy } from "../rpc-policy.js";

export interface AuthenticationInterceptorOptions {
  readonly authenticator: Pick<Authenticator, "authenticate">;
  readonly policyHolder: PolicyHolder<RpcPolicy>;
  /** Fully-qualified service names, or a prefix ending in `.*` (`grpc.reflection.*`). */
  readonly openServices: readonly string[];
}

/**
 * A bearer token, when sent, always decides. Without one, a principal the listener already set
 * (the gRPC listener, from a TLS client certificate it verified) is kept; otherwise the call is
 * `unauthenticated`.
 */
export function createAuthenticationInterceptor(options: AuthenticationInterceptorOptions): Interceptor {
  const isOpen = openServiceMatcher(options.openServices);
  const authorize = <R>(call: CallContext, principal: Principal, invoke: () => Promise<R>): Promise<R> => {
    options.policyHolder.current().authorizeRpc(principal, fullMethodName(call));
    return invoke();
  };
  return (call, invoke) => {
    if (isOpen(call.service)) return invoke();
    const authorization = call.requestHeader.get("authorization");
    if (authorization === null && call.principal !== undefined) return authorize(call, call.principal, invoke);
    return options.authenticator.authenticate(authorization).then((principal) => {
      call.principal = principal;
      return authorize(call, principal, invoke);
    });
  };
}

export function openServiceMatcher(openServices: readonly string[]): (service: string) => boolean {
  const exact = new Set(openServices.filter((name) => !name.endsWith(".*")));
  const prefixes = openServices.filter((name) => name.endsWith(".*")).map((name) => name.slice(0, -1));
  return (service) => exact.has(service) || prefixes.some((prefix) => service.startsWith(prefix));
}
