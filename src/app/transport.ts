/**
 * Wiring of the edge: callers' authentication, the interceptor chain, the service bindings, and
 * the gRPC and HTTP listeners with their routes.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { DescService } from "@bufbuild/protobuf";
import { createAuthenticator, type Authenticator } from "../auth/authenticator.js";
import { loadOrCreateLocalSigningKey } from "../auth/local-signing-key.js";
import type { RateLimiter } from "../domain/rate-limiter.js";
import type { TokenService } from "../domain/tokens/token-service.js";
import { AuditService } from "../gen/oauthbroker/v1/audit_service_pb.js";
import { AuthorizationService } from "../gen/oauthbroker/v1/authorization_service_pb.js";
import { IntegrationService } from "../gen/oauthbroker/v1/integration_service_pb.js";
import { ProviderService } from "../gen/oauthbroker/v1/provider_service_pb.js";
import { StatusService } from "../gen/oauthbroker/v1/status_service_pb.js";
import { TokenService as TokenServiceDesc } from "../gen/oauthbroker/v1/token_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import type { ErrorReporter } from "../observability/error-reporter.js";
import type { SecurityAuditRecorder } from "../observability/security-audit.js";
import { createAdmission } from "../transport/admission.js";
import { reserveListenAddresses, type AddressReservation } from "../transport/address-reservation.js";
import { startGrpcListener, type GrpcListener } from "../transport/grpc-listener.js";
import { createAuditServiceHandlers } from "../transport/handlers/audit-service.js";
import { createAuditTrailReader } from "../storage/audit-query.js";
import { createIntegrationAccess } from "../domain/integration-access.js";
import { createAuthorizationServiceHandlers } from "../transport/handlers/authorization-service.js";
import { createIntegrationServiceHandlers } from "../transport/handlers/integration-service.js";
import { createProviderServiceHandlers } from "../transport/handlers/provider-service.js";
import { createStatusServiceHandlers } from "../transport/handlers/status-service.js";
import { createTokenServiceHandlers, createWarmGetAccessToken } from "../transport/handlers/token-service.js";
import type { GrpcServiceBinding } from "../transport/grpc-adapter.js";
import { createWarmTokenPath } from "../transport/warm-token-path.js";
import { createHealth, type HealthState } from "../transport/health.js";
import { startHttpListener, type HttpListener, type HttpRequest, type HttpResponse } from "../transport/http-listener.js";
import { healthzRoute, metricsRoute, readyzRoute } from "../transport/http-routes.js";
import { createInterceptorChain } from "../transport/interceptors/chain.js";
import type { ObserveInterceptor } from "../transport/interceptors/observe.js";
import { OPEN_SERVICES } from "../transport/open-services.js";
import { webPageRoute } from "../transport/web-page.js";
import { createOAuthCallbackRoute } from "../transport/oauth-callback-route.js";
import { createReflectionBindings } from "../transport/reflection.js";
import { bindService, interceptBinding } from "../transport/service-binding.js";
import type { DomainServices } from "./domain.js";
import type { DrainState, LiveSettings } from "./live-settings.js";
import type { Telemetry } from "./observability.js";
import type { Providers } from "./providers.js";
import type { Readiness } from "./readiness.js";
import type { ChangeFeed, Storage } from "./storage.js";
import type { Wiring } from "./wiring.js";

export async function reserveAddresses({ config, closers }: Wiring): Promise<AddressReservation> {
  const reservation = await reserveListenAddresses([
    { variable: "BROKER_GRPC_ADDR", address: config.grpcAddress },
    { variable: "BROKER_HTTP_ADDR", address: config.httpAddress },
  ]);
  closers.add("listen address reservation", () => reservation.release());
  return reservation;
}

export async function openAuthenticator({ config, logger, clock, closers }: Wiring): Promise<Authenticator> {
  const localKey = config.auth.issuers.length === 0 ? await loadOrCreateLocalSigningKey(config.dataDir) : undefined;
  const authenticator = createAuthenticator({ issuers: config.auth.issuers, localKey, logger, clock });
  closers.add("authenticator", async () => authenticator.close());
  return authenticator;
}

export interface TransportParts {
  readonly reservation: AddressReservation;
  readonly errorReporter: ErrorReporter;
  readonly telemetry: Telemetry;
  readonly authenticator: Authenticator;
  readonly securityAudit: SecurityAuditRecorder;
  readonly live: LiveSettings;
  readonly drain: DrainState;
  readonly limiter: RateLimiter;
  readonly storage: Storage;
  readonly providers: Providers;
  readonly tokenService: TokenService;
  readonly services: DomainServices;
  readonly changeFeed: ChangeFeed;
  readonly readiness: Readiness;
}

export interface Transport {
  readonly grpcListener: GrpcListener;
  readonly httpListener: HttpListener;
  readonly health: HealthState;
  readonly observe: ObserveInterceptor;
  /** Aborted once the grace period is over: streams still open end then. */
  readonly shutdown: AbortController;
}

export async function startTransport({ config, logger, closers }: Wiring, parts: TransportParts): Promise<Transport> {
  const { telemetry, authenticator, live, storage, providers, tokenService, services } = parts;
  const { metrics } = telemetry;
  const shutdown = new AbortController();
  const { interceptors, observe } = createInterceptorChain({
    logger,
    metrics,
    watchdog: telemetry.watchdog,
    errorReporter: parts.errorReporter,
    securityAudit: parts.securityAudit,
    isDraining: () => parts.drain.isDraining(),
    authenticator,
    policyHolder: live.policy,
    limiter: parts.limiter,
    limits: () => live.current().limits,
  });
  const admission = createAdmission({ authenticator, openServices: OPEN_SERVICES });
  const { maxRequestBytes } = config.limits;
  const { integrations } = storage;
  const { deletion, sync, authorization } = services;
  const integrationAccess = createIntegrationAccess(live.policy);
  const tokenHandlerDeps = { tokenService, access: integrationAccess, defaultMinValidForSeconds: config.tokens.defaultMinValidForSeconds };
  const brokerBindings = [
    bindService(
      ProviderService,
      createProviderServiceHandlers({ providers: () => providers.configs, redirectUri: providers.registry.redirectUri }),
    ),
    bindService(StatusService, createStatusServiceHandlers(parts.readiness.status)),
    bindService(TokenServiceDesc, createTokenServiceHandlers(tokenHandlerDeps)),
    bindService(AuthorizationService, createAuthorizationServiceHandlers({ service: authorization })),
    bindService(
      IntegrationService,
      createIntegrationServiceHandlers({ integrations, tokenService, access: integrationAccess, deletion, sync, changes: parts.changeFeed }),
    ),
    bindService(AuditService, createAuditServiceHandlers({ auditTrail: createAuditTrailReader(storage.database.sql) })),
  ];
  const servedServices: DescService[] = [...brokerBindings.map((b) => b.service), Health];
  const health = createHealth(brokerBindings.map((b) => b.service.typeName));
  const bindings = [...brokerBindings, health.binding, ...createReflectionBindings(servedServices)].map((b) =>
    interceptBinding(b, interceptors, shutdown.signal),
  );
  // The gRPC listener answers warm GetAccessToken calls at once; the HTTP listener has no such path.
  const warmGetAccessToken = createWarmTokenPath({
    answer: createWarmGetAccessToken(tokenHandlerDeps),
    authenticator,
    policyHolder: live.policy,
    isDraining: () => parts.drain.isDraining(),
    limiter: parts.limiter,
    limits: () => live.current().limits,
    observe,
  });
  const grpcBindings: GrpcServiceBinding[] = bindings.map((b) =>
    b.service.typeName === TokenServiceDesc.typeName ? { ...b, warmPaths: { getAccessToken: warmGetAccessToken } } : b,
  );

  await parts.reservation.release();
  const grpcListener: GrpcListener = await startGrpcListener({
    address: config.grpcAddress,
    bindings: grpcBindings,
    tls: config.grpcTls,
    maxRequestBytes,
    admission,
  });
  closers.add("gRPC listener", () => grpcListener.close(config.shutdownGraceMs));
  const { sandbox } = providers;
  const httpListener: HttpListener = await startHttpListener({
    address: config.httpAddress,
    bindings,
    maxRequestBytes,
    admission,
    routes: [
      // Koa (inside oidc-provider) also runs on the HTTP/2 compatibility objects.
      ...(sandbox ? [(req: HttpRequest, res: HttpResponse) => sandbox.handle(req as IncomingMessage, res as ServerResponse)] : []),
      createOAuthCallbackRoute({ service: authorization, publicUrl: config.publicUrl, logger }),
      webPageRoute(),
      healthzRoute(),
      readyzRoute(parts.readiness.checks),
      metricsRoute({
        render: () => metrics.render(),
        authorize: config.auth.protectMetrics
          ? (req) =>
              authenticator.authenticate(req.headers.authorization ?? null).then(
                () => true,
                () => false,
              )
          : undefined,
      }),
    ],
    onRouteError: (error, req) => logger.error({ err: error, path: req.url }, "HTTP route failed"),
  });
  closers.add("HTTP listener", () => httpListener.close(config.shutdownGraceMs));
  return { grpcListener, httpListener, health, observe, shutdown };
}
