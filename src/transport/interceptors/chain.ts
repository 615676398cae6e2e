/**
 * The interceptor chain every broker RPC runs through, outermost first. The order is part of the
 * contract, so it is built here alone:
 * - the request id first, so every line below it (and the caller's response) carries it;
 * - observe outside error mapping, so its log line and metrics show the status the caller sees;
 * - error mapping outside the security audit, which must see the `BrokerError`s themselves;
 * - draining before authentication: a replica on its way out refuses without verifying tokens;
 * - rate limits after authentication, so the bucket key is a verified identity, not a claim;
 * - the request edge last: a caller learns nothing about its body before it is authenticated.
 */
import type { Authenticator } from "../../auth/authenticator.js";
import type { PolicyHolder } from "../../domain/policy.js";
import type { RateLimiter } from "../../domain/rate-limiter.js";
import type { ErrorReporter } from "../../observability/error-reporter.js";
import type { InflightWatchdog } from "../../observability/inflight-watchdog.js";
import type { Logger } from "../../observability/logger.js";
import type { Metrics } from "../../observability/metrics.js";
import type { SecurityAuditRecorder } from "../../observability/security-audit.js";
import type { Interceptor } from "../call.js";
import { OPEN_SERVICES } from "../open-services.js";
import type { RpcPolicy } from "../rpc-policy.js";
import { createAuthenticationInterceptor } from "./authentication.js";
import { createDrainingInterceptor } from "./draining.js";
import { createErrorInterceptor } from "./errors.js";
import { createObserveInterceptor, type ObserveInterceptor } from "./observe.js";
import { createRateLimitInterceptor, type RateLimits } from "./rate-limit.js";
import { createRequestEdgeInterceptor } from "./request-edge.js";
import { createRequestIdInterceptor } from "./request-id.js";
import { createSecurityAuditInterceptor } from "./security-audit.js";

export interface InterceptorChainOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly watchdog?: InflightWatchdog | undefined;
  readonly errorReporter?: ErrorReporter | undefined;
  readonly securityAudit: Pick<SecurityAuditRecorder, "record">;
  readonly isDraining: () => boolean;
  readonly authenticator: Pick<Authenticator, "authenticate">;
  readonly policyHolder: PolicyHolder<RpcPolicy>;
  readonly limiter: RateLimiter;
  /** The limits, or a getter so a configuration reload takes effect on the next call. */
  readonly limits: RateLimits | (() => RateLimits);
}

export interface InterceptorChain {
  readonly interceptors: readonly Interceptor[];
  /** The observe interceptor's in-flight count, which shutdown waits on. */
  readonly observe: ObserveInterceptor;
}

export function createInterceptorChain(options: InterceptorChainOptions): InterceptorChain {
  const observe = createObserveInterceptor({ logger: options.logger, metrics: options.metrics, watchdog: options.watchdog });
  const interceptors = [
    createRequestIdInterceptor(),
    observe.interceptor,
    createErrorInterceptor({ reporter: options.errorReporter }),
    createSecurityAuditInterceptor({ recorder: options.securityAudit }),
    createDrainingInterceptor({ isDraining: options.isDraining, openServices: OPEN_SERVICES }),
    createAuthenticationInterceptor({ authenticator: options.authenticator, policyHolder: options.policyHolder, openServices: OPEN_SERVICES }),
    createRateLimitInterceptor({ limiter: options.limiter, limits: options.limits }),
    createRequestEdgeInterceptor(),
  ];
  return { interceptors, observe };
}
