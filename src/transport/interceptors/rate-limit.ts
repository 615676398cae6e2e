/**
 * Per-principal, per-RPC-class token buckets, after authentication (so the key is a verified
 * identity, not a claim). Limits hold per replica. Unauthenticated open methods are not limited.
 */
import type { Config, RateLimit } from "../../config/types.js";
import { BrokerError } from "../../domain/errors.js";
import { rateLimitedError, type RateLimiter } from "../../domain/rate-limiter.js";
import type { Principal } from "../../domain/types.js";
import { rpcClass } from "../rpc-operations.js";
import { fullMethodName, type Interceptor } from "../call.js";

export type RateLimits = Config["limits"];

export interface RateLimitInterceptorOptions {
  readonly limiter: RateLimiter;
  /** The limits, or a getter so a configuration reload takes effect on the next call. */
  readonly limits: RateLimits | (() => RateLimits);
}

/** The bucket of a principal's calls of one RPC class: the chain and the gRPC warm path take from the same one. */
export function principalBucketKey(principal: Pick<Principal, "kind" | "subject">, cls: string): string {
  return `${principal.kind}:${principal.subject}:${cls}`;
}

export function createRateLimitInterceptor(options: RateLimitInterceptorOptions): Interceptor {
  const limits = typeof options.limits === "function" ? options.limits : constant(options.limits);
  return (call, invoke) => {
    const principal = call.principal;
    if (principal === undefined) return invoke();
    const cls = rpcClass(fullMethodName(call));
    const result = options.limiter.take(principalBucketKey(principal, cls), limits().perPrincipal[cls]);
    if (!result.allowed) return Promise.reject(naming(rateLimitedError(`${cls} calls`, result.retryAfterMs), cls));
    return invoke();
  };
}

/**
 * The per-user limit on starting authorizations (each one creates a session row and sends the
 * user to a consent page). The StartAuthorization handler calls it with the resolved user, so a
 * service acting for many users is limited per user, not only per service.
 */
export function enforceStartAuthorizationLimit(limiter: RateLimiter, limit: RateLimit, userId: string): void {
  const result = limiter.take(`start_authorization:user:${userId}`, limit);
  if (!result.allowed) throw naming(rateLimitedError("StartAuthorization calls for this user", result.retryAfterMs), "start_authorization_per_user");
}

/**
 * The same error with `ErrorInfo.metadata.limit` naming the limit that refused, so a client
 * knows which budget it exhausted and the audit event (`rate_limit.exceeded`) records it.
 */
function naming(error: BrokerError, limit: string): BrokerError {
  return new BrokerError(error.code, error.message, {
    reason: error.reason,
    retryAfterMs: error.retryAfterMs,
    metadata: { ...error.metadata, limit },
  });
}

function constant(limits: RateLimits): () => RateLimits {
  return () => limits;
}
