/**
 * Both listeners on port 0 with the broker's own interceptor chain, mounting the given bindings
 * plus health and reflection: the transport layer exactly as the broker runs it, minus storage.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Authenticator } from "../../src/auth/authenticator.js";
import type { GrpcTlsConfig } from "../../src/config/types.js";
import { BrokerError } from "../../src/domain/errors.js";
import { createPolicyHolder, type PolicyHolder } from "../../src/domain/policy.js";
import type { PrincipalKind } from "../../src/domain/types.js";
import { systemClock } from "../../src/domain/ports.js";
import { createRateLimiter, type RateLimit } from "../../src/domain/rate-limiter.js";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.js";
import type { ErrorReporter } from "../../src/observability/error-reporter.js";
import type { Logger } from "../../src/observability/logger.js";
import { createMetrics, type Metrics } from "../../src/observability/metrics.js";
import type { SecurityAuditRecorder } from "../../src/observability/security-audit.js";
import { startGrpcListener } from "../../src/transport/grpc-listener.js";
import { createHealth, type HealthState } from "../../src/transport/health.js";
import { startHttpListener, type HttpRoute } from "../../src/transport/http-listener.js";
import { createInterceptorChain } from "../../src/transport/interceptors/chain.js";
import type { RateLimits } from "../../src/transport/interceptors/rate-limit.js";
import { createReflectionBindings } from "../../src/transport/reflection.js";
import { createRpcPolicy, type RpcPolicy } from "../../src/transport/rpc-policy.js";
import { interceptBinding, type ServiceBinding } from "../../src/transport/service-binding.js";
import { captureLogger, type CapturedLog } from "./log-capture.js";

export interface TransportFixture {
  readonly grpcAddress: string;
  readonly httpUrl: string;
  readonly metrics: Metrics;
  readonly health: HealthState;
  readonly log: CapturedLog;
  /** The logger the interceptors write to, for handlers whose lines the test inspects too. */
  readonly logger: Logger;
  setDraining(value: boolean): void;
  close(): Promise<void>;
}

export interface FixtureAuthentication {
  readonly authenticator: Pick<Authenticator, "authenticate">;
  readonly policyHolder: PolicyHolder<RpcPolicy>;
}

/**
 * For tests about something else than who calls: every call, with a token or without, is taken
 * to come from an admin, whom the real policy lets call any method.
 */
const EVERY_CALLER_AN_ADMIN: FixtureAuthentication = {
  authenticator: { authenticate: () => Promise.resolve({ kind: "admin", subject: "transport-fixture", issuer: "local" }) },
  policyHolder: createPolicyHolder(createRpcPolicy({ policies: [], providers: [] })),
};

/**
 * Callers named by their bearer token itself (`Bearer user:alice`, `Bearer service:backend`),
 * for tests about what a principal may do rather than how it proves who it is: the real policy,
 * which `policyHolder.replace` can swap once the providers it names exist, still decides.
 */
export function namedCallers(policy: RpcPolicy = createRpcPolicy({ policies: [], providers: [] })): FixtureAuthentication {
  return {
    authenticator: {
      authenticate: async (header) => {
        const match = /^Bearer (user|service|admin):(.+)$/.exec(header ?? "");
        if (match === null) throw new BrokerError("unauthenticated", "name the caller as `Bearer <kind>:<subject>`");
        return { kind: match[1] as PrincipalKind, subject: match[2] ?? "", issuer: "test" };
      },
    },
    policyHolder: createPolicyHolder(policy),
  };
}

const UNLIMITED: RateLimit = { ratePerSecond: 1_000_000, burst: 1_000_000 };
/** Limits no test reaches unless it asks for tighter ones. */
export const GENEROUS_LIMITS: RateLimits = {
  perPrincipal: { token: UNLIMITED, read: UNLIMITED, write: UNLIMITED, admin: UNLIMITED },
  startAuthorizationPerUser: UNLIMITED,
  maxRequestBytes: 1024 * 1024,
};

/** Handlers that answer every method with an empty message (a stream with none), for tests of the edge. */
export function succeedingImpl<S extends DescService>(service: S): ServiceImpl<S> {
  const impl: Record<string, unknown> = {};
  for (const method of service.methods) impl[method.localName] = method.methodKind === "unary" ? () => ({}) : async function* () {};
  return impl as ServiceImpl<S>;
}

export async function startTransportFixture(options: {
  bindings: ServiceBinding[];
  /** Without it, every caller is an admin (see EVERY_CALLER_AN_ADMIN). */
  authentication?: FixtureAuthentication;
  /** Where refusals go; without it they are counted nowhere. */
  securityAudit?: Pick<SecurityAuditRecorder, "record">;
  limits?: RateLimits;
  routes?: HttpRoute[];
  grpcTls?: GrpcTlsConfig;
  errorReporter?: ErrorReporter;
}): Promise<TransportFixture> {
  const { logger, log } = captureLogger();
  const metrics = createMetrics();
  let draining = false;
  const authentication = options.authentication ?? EVERY_CALLER_AN_ADMIN;
  const { interceptors } = createInterceptorChain({
    logger,
    metrics,
    errorReporter: options.errorReporter,
    securityAudit: options.securityAudit ?? { record: () => undefined },
    isDraining: () => draining,
    authenticator: authentication.authenticator,
    policyHolder: authentication.policyHolder,
    limiter: createRateLimiter({ clock: systemClock }),
    limits: options.limits ?? GENEROUS_LIMITS,
  });
  const health = createHealth(options.bindings.map((b) => b.service.typeName));
  const served: DescService[] = [...options.bindings.map((b) => b.service), Health];
  const shutdown = new AbortController();
  const bindings = [...options.bindings, health.binding, ...createReflectionBindings(served)].map((b) =>
    interceptBinding(b, interceptors, shutdown.signal),
  );
  const grpcListener = await startGrpcListener({ address: { host: "127.0.0.1", port: 0 }, bindings, tls: options.grpcTls });
  const httpListener = await startHttpListener({
    address: { host: "127.0.0.1", port: 0 },
    bindings,
    routes: options.routes ?? [],
    onRouteError: (error) => logger.error({ err: error }, "route failed"),
  });
  return {
    grpcAddress: `127.0.0.1:${grpcListener.port}`,
    httpUrl: `http://127.0.0.1:${httpListener.port}`,
    metrics,
    health,
    log,
    logger,
    setDraining: (value) => {
      draining = value;
    },
    async close() {
      shutdown.abort();
      await Promise.all([grpcListener.close(1000), httpListener.close(1000)]);
    },
  };
}
