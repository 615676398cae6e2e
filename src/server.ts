/**
 * Assembles a running broker from a validated configuration: storage, key service, callers'
 * authentication, the services, and both listeners. `main.ts` adds the process concerns
 * (signals, exit codes); tests and benchmarks start brokers in-process through here.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import type { Config } from "./config/types.js";
import { BrokerError } from "./domain/errors.js";
import { systemClock, type Cipher, type Clock } from "./domain/ports.js";
import type { Logger } from "./observability/logger.js";
import { configuredSecrets, createErrorReporter } from "./observability/error-reporter.js";
import { runInBackgroundContext } from "./observability/request-context.js";
import { createSecurityAuditRecorder } from "./observability/security-audit.js";
import { createRpcPolicy } from "./transport/rpc-policy.js";
import { createSecurityAuditInterceptor } from "./transport/interceptors/security-audit.js";
import { createMetrics, type Metrics } from "./observability/metrics.js";
import { createInflightWatchdog } from "./observability/inflight-watchdog.js";
import { createDatabaseHealth } from "./storage/database-health.js";
import { createDatabase, type Database } from "./storage/database.js";
import { startEmbeddedPostgres } from "./storage/embedded-postgres.js";
import { latestMigrationVersion, migrationStatus, runMigrations } from "./storage/migrate.js";
import { createIntegrationRepository } from "./storage/integration-repository.js";
import { createSessionRepository } from "./storage/session-repository.js";
import { createTokenSetRepository } from "./storage/token-set-repository.js";
import { createTokenNotifications } from "./storage/token-notifications.js";
import { createPostgresAuditLog } from "./storage/audit-log.js";
import { createAuditChainMonitor } from "./storage/audit-chain-monitor.js";
import { startAuditRetentionJob } from "./jobs/audit-retention.js";
import { createAuditRetentionStore } from "./storage/audit-retention-store.js";
import { createAuditTrailReader } from "./storage/audit-query.js";
import { startProactiveRefresher } from "./jobs/proactive-refresh.js";
import { createProviderPauseNotifications } from "./storage/provider-pause-notifications.js";
import { startPeriodicJob, type PeriodicJob } from "./jobs/periodic.js";
import { logCleanup, runCleanup } from "./jobs/cleanup.js";
import { createIntegrationEventStore } from "./storage/integration-events.js";
import { createRevocationQueue } from "./storage/revocation-queue.js";
import { createStatusQueries } from "./storage/status-queries.js";
import { createIntegrationDeletion } from "./domain/integration-deletion.js";
import { refreshBudget } from "./domain/tokens/lease-heartbeat.js";
import { createIntegrationSync } from "./domain/integration-sync.js";
import { createAuditServiceHandlers } from "./transport/handlers/audit-service.js";
import { createAuthorizationService } from "./domain/authorization-service.js";
import { createTokenService } from "./domain/tokens/token-service.js";
import { createAuthorizationServiceHandlers } from "./transport/handlers/authorization-service.js";
import { createTokenServiceHandlers } from "./transport/handlers/token-service.js";
import { createIntegrationServiceHandlers } from "./transport/handlers/integration-service.js";
import { createIntegrationAccess } from "./domain/integration-access.js";
import { createOAuthCallbackRoute } from "./transport/oauth-callback-route.js";
import { enforceStartAuthorizationLimit } from "./transport/interceptors/rate-limit.js";
import { createCipher } from "./crypto/create-cipher.js";
import { measureCipher } from "./crypto/measured-cipher.js";
import { createAuthenticator } from "./auth/authenticator.js";
import { loadOrCreateLocalSigningKey } from "./auth/local-signing-key.js";
import { createPolicyHolder } from "./domain/policy.js";
import { createProviderRegistry, providerRedirectUri } from "./providers/provider-registry.js";
import { observingFetch } from "./providers/provider-http.js";
import { createSandboxProvider, sandboxProviderConfig } from "./providers/sandbox-provider.js";
import { createRateLimiter } from "./domain/rate-limiter.js";
import { createAuthenticationInterceptor } from "./transport/interceptors/authentication.js";
import { createRateLimitInterceptor } from "./transport/interceptors/rate-limit.js";
import { AuditService } from "./gen/oauthbroker/v1/audit_service_pb.js";
import { AuthorizationService } from "./gen/oauthbroker/v1/authorization_service_pb.js";
import { IntegrationService } from "./gen/oauthbroker/v1/integration_service_pb.js";
import { ProviderService } from "./gen/oauthbroker/v1/provider_service_pb.js";
import { StatusService } from "./gen/oauthbroker/v1/status_service_pb.js";
import { TokenService } from "./gen/oauthbroker/v1/token_service_pb.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { OPEN_SERVICES } from "./transport/open-services.js";
import { createHealth, ServingStatus } from "./transport/health.js";
import { createReflectionBindings } from "./transport/reflection.js";
import { bindService, interceptBinding, type ServiceBinding } from "./transport/service-binding.js";
import { reserveListenAddresses } from "./transport/address-reservation.js";
import { startGrpcListener, type GrpcListener } from "./transport/grpc-listener.js";
import {
  startHttpListener,
  type HttpListener,
  type HttpRequest,
  type HttpResponse,
} from "./transport/http-listener.js";
import { healthzRoute, metricsRoute, readyzRoute } from "./transport/http-routes.js";
import { webPageRoute } from "./transport/web-page.js";
import { createRequestIdInterceptor } from "./transport/interceptors/request-id.js";
import { createObserveInterceptor } from "./transport/interceptors/observe.js";
import { createErrorInterceptor } from "./transport/interceptors/errors.js";
import { createDrainingInterceptor } from "./transport/interceptors/draining.js";
import { createRequestEdgeInterceptor } from "./transport/interceptors/request-edge.js";
import { createAdmission } from "./transport/admission.js";
import { createProviderServiceHandlers } from "./transport/handlers/provider-service.js";
import { createStatusServiceHandlers } from "./transport/handlers/status-service.js";

export { OPEN_SERVICES };

export interface RunningBroker {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly metrics: Metrics;
  readonly database: Database;
  readonly cipher: Cipher;
  /**
   * Applies a re-loaded configuration's policies and limits (SIGHUP). Calls in flight finish
   * under the policy they started with; the next call sees the new one.
   */
  reload(next: Config): void;
  /** The background jobs, to run a pass now (operations, tests) instead of at the next interval. */
  readonly jobs: { readonly revocations: PeriodicJob; readonly cleanup: PeriodicJob; readonly proactiveRefresh: { runOnce(): Promise<unknown> } };
  /** Turns health NOT_SERVING and refuses new calls; running calls continue. */
  drain(): void;
  /** Drains, waits for running calls (bounded by the configured grace), closes everything. */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: Clock;
}

/** Starts what must be closed again if a later step fails. */
class Closers {
  private readonly steps: Array<{ name: string; close: () => Promise<void> }> = [];
  add(name: string, close: () => Promise<void>): void {
    this.steps.unshift({ name, close });
  }
  async closeAll(logger: Logger): Promise<void> {
    for (const step of this.steps.splice(0)) {
      try {
        await step.close();
      } catch (error) {
        logger.warn({ err: error, step: step.name }, "shutdown step failed");
      }
    }
  }
}

async function openDatabase(config: Config, logger: Logger, closers: Closers): Promise<Database> {
  let url = config.databaseUrl?.reveal();
  if (url === undefined) {
    const embedded = await startEmbeddedPostgres({ dataDir: join(config.dataDir, "postgres"), port: 0, logger });
    closers.add("embedded postgres", () => embedded.stop());
    logger.info({ dataDir: config.dataDir }, "embedded PostgreSQL started (no DATABASE_URL set)");
    url = embedded.url;
  }
  const database = createDatabase({ url, poolSize: config.databasePoolSize, logger });
  closers.add("database pool", () => database.close(5));
  try {
    await database.ping();
  } catch (error) {
    throw new BrokerError("database_unavailable", "cannot reach PostgreSQL at start-up: check DATABASE_URL and that the server is running", {
      cause: error,
    });
  }
  await runMigrations(database.sql, { logger });
  return database;
}

/** A revocation the provider keeps refusing is given up (and alarmed) after this many attempts or this age. */
const REVOCATION_MAX_ATTEMPTS = 12;
const REVOCATION_GIVE_UP_MS = 7 * 86_400_000;
const REVOCATION_BATCH = 20;

export async function startBroker(options: StartOptions): Promise<RunningBroker> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const startedAt = clock.now();
  const closers = new Closers();
  try {
    // First in, last out: faults during the rest of the shutdown are still reported, then flushed.
    const errorReporter = createErrorReporter({
      dsn: config.sentryDsn?.reveal(),
      environment: config.sentryEnvironment ?? config.nodeEnv,
      release: config.version,
      logger,
      knownSecrets: configuredSecrets(config),
    });
    closers.add("error reporter", () => errorReporter.close());
    const reservation = await reserveListenAddresses([
      { variable: "BROKER_GRPC_ADDR", address: config.grpcAddress },
      { variable: "BROKER_HTTP_ADDR", address: config.httpAddress },
    ]);
    closers.add("listen address reservation", () => reservation.release());
    const database = await openDatabase(config, logger, closers);
    const integrations = createIntegrationRepository(database.sql);
    const maxWaitMs = config.tokens.maxWaitSeconds * 1000;
    // A call without a deadline may wait up to the wait limit; twice that, it is stuck.
    const watchdog = createInflightWatchdog({ noDeadlineMs: 2 * maxWaitMs });
    const databaseHealth = createDatabaseHealth({
      ping: (timeoutMs) => database.ping(timeoutMs),
      probeTimeoutMs: config.databaseCallTimeoutMs,
      onChange: (available, cause) =>
        available
          ? logger.info("the database answers again; /readyz follows")
          : logger.warn({ err: cause }, "database calls are failing: /readyz answers 503 until it answers again"),
    });
    const metrics = createMetrics({
      inflight: () => ({ oldestSeconds: watchdog.oldestSeconds(), overdue: watchdog.overdue() }),
      integrationCounts: () => integrations.countByStatus(),
      onCollectError: (error) => logger.warn({ err: error }, "could not count integrations for /metrics"),
    });
    // A pause is rare: start each provider's count at 0 so rate() and increase() see the first one.
    for (const provider of config.providers) metrics.providerPauses.inc({ provider: provider.id }, 0);
    const cipher = measureCipher(await createCipher(config, logger), metrics);
    closers.add("key service", () => cipher.close());

    const localKey = config.auth.issuers.length === 0 ? await loadOrCreateLocalSigningKey(config.dataDir) : undefined;
    const authenticator = createAuthenticator({ issuers: config.auth.issuers, localKey, logger, clock });
    closers.add("authenticator", async () => authenticator.close());
    const policyHolder = createPolicyHolder(createRpcPolicy({ policies: config.policies, providers: config.providers }));
    let limits = config.limits;
    const limiter = createRateLimiter({ clock });

    let draining = false;
    const shutdown = new AbortController();
    const observe = createObserveInterceptor({ logger, metrics, watchdog });
    const interceptors = [
      createRequestIdInterceptor(),
      observe.interceptor,
      createErrorInterceptor({ reporter: errorReporter }),
      // `securityAudit` is created with the audit log below; refusals only happen once listeners run.
      createSecurityAuditInterceptor({ recorder: { record: (event) => securityAudit.record(event) } }),
      createDrainingInterceptor({ isDraining: () => draining, openServices: OPEN_SERVICES }),
      createAuthenticationInterceptor({ authenticator, policyHolder, openServices: OPEN_SERVICES }),
      createRateLimitInterceptor({ limiter, limits: () => limits }),
      createRequestEdgeInterceptor(),
    ];
    const admission = createAdmission({ authenticator, openServices: OPEN_SERVICES });
    const { maxRequestBytes } = config.limits;

    const sandboxSettings = config.providers.find((p) => p.kind === "sandbox");
    const sandbox = sandboxSettings
      ? await createSandboxProvider({
          publicUrl: config.publicUrl,
          pathPrefix: "/sandbox",
          redirectUri: providerRedirectUri(config.publicUrl, sandboxSettings.id),
          accessTokenTtlSeconds: sandboxSettings.defaultAccessTokenLifetimeSeconds,
          logger,
        })
      : undefined;
    if (sandbox) closers.add("sandbox provider", () => sandbox.close());
    const providerConfigs = config.providers.map((p) =>
      p.kind === "sandbox" && sandbox ? sandboxProviderConfig(p, sandbox) : p,
    );
    const providers = await createProviderRegistry(providerConfigs, {
      logger,
      clock,
      publicUrl: config.publicUrl,
      fetch: observingFetch((call) => {
        metrics.providerHttpRequests.inc({ provider: call.provider, endpoint: call.endpoint, status: call.status });
        if (call.seconds !== undefined) {
          metrics.providerHttpRequestSeconds.observe({ provider: call.provider, endpoint: call.endpoint }, call.seconds);
        }
      }),
    });

    const audit = createPostgresAuditLog({
      sql: database.sql,
      logger,
      clock,
      onWriteFailure: (events) => metrics.auditWriteFailures.inc(events),
    });
    closers.add("audit log", () => audit.close());
    const securityAudit = createSecurityAuditRecorder({ audit, logger, clock });
    closers.add("security audit", () => securityAudit.close());
    const auditMonitor = createAuditChainMonitor({
      sql: database.sql,
      intervalMs: 60_000,
      logger,
      onVerdict: (verdict) => metrics.auditChainIntact.set(verdict.intact ? 1 : 0),
    });
    await auditMonitor.start();
    closers.add("audit chain monitor", async () => auditMonitor.stop());
    const auditRetention = startAuditRetentionJob({
      store: createAuditRetentionStore(database.sql),
      retentionDays: config.retention.auditDays,
      intervalMs: 3_600_000,
      logger,
    });
    closers.add("audit retention", async () => auditRetention.stop());

    const notifications = await createTokenNotifications(database.sql, logger);
    closers.add("token notifications", () => notifications.close());
    const providerPauses = await createProviderPauseNotifications(database.sql, logger);
    closers.add("provider pause notifications", () => providerPauses.close());
    const tokenSets = createTokenSetRepository(database.sql);
    const replicaId = `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
    const tokenService = createTokenService({
      store: { integrations, tokenSets },
      cipher,
      providers,
      clock,
      logger,
      replicaId,
      changes: notifications,
      pauseFeed: providerPauses,
      audit,
      settings: {
        cacheMaxEntries: config.tokens.cacheMaxEntries,
        leaseSeconds: config.tokens.leaseSeconds,
        providerPause: { maxPauseMs: config.tokens.providerPauseMaxSeconds * 1000, backoffCapMs: config.tokens.rateLimitBackoffMaxSeconds * 1000 },
        databaseCallTimeoutMs: config.databaseCallTimeoutMs,
        maxWaitMs,
      },
      database: databaseHealth,
      events: {
        cache: (hit) => metrics.tokenCacheRequests.inc({ result: hit ? "hit" : "miss" }),
        refresh: (provider, result, seconds) => {
          metrics.tokenRefreshes.inc({ provider, result });
          metrics.tokenRefreshSeconds.observe({ provider }, seconds);
        },
        leaseWait: () => metrics.leaseWaits.inc(),
        circuit: (provider, state) => metrics.setCircuitState(provider, state),
        providerPause: (provider) => metrics.providerPauses.inc({ provider }),
      },
    });
    closers.add("token service", async () => tokenService.close());
    const refresher = startProactiveRefresher({
      claim: (request) => tokenSets.claimExpiring(request),
      // Each refresh gets its own request id: its log lines, provider and Vault requests correlate.
      tokenService: {
        refreshAhead: (integrationId, withinMs) =>
          runInBackgroundContext("proactive-refresh", () => tokenService.refreshAhead(integrationId, withinMs)),
      },
      logger,
      replicaId,
      windowMs: config.tokens.proactiveRefreshWindowSeconds * 1000,
      intervalMs: config.tokens.proactiveRefreshIntervalSeconds * 1000,
      leaseMs: config.tokens.leaseSeconds * 1000,
    });
    closers.add("proactive refresher", () => refresher.stop());

    const changeFeed = createIntegrationEventStore(database.sql, logger);
    closers.add("change feed", () => changeFeed.close());
    const deletion = createIntegrationDeletion({
      store: { tokenSets, integrations, revocations: createRevocationQueue(database.sql) },
      cipher,
      providers,
      audit,
      clock,
      logger,
      replicaId,
      // Other replicas learn of it from the delete's own transaction (NOTIFY on commit).
      onDeleted: (id) => tokenService.evict(id),
      settings: {
        leaseMs: config.tokens.leaseSeconds * 1000,
        // Same settings as the token service's: how long one of its refreshes may keep the lease.
        holdLimitMs: refreshBudget({ databaseCallTimeoutMs: config.databaseCallTimeoutMs }).holdLimitMs,
        maxAttempts: REVOCATION_MAX_ATTEMPTS,
        giveUpAfterMs: REVOCATION_GIVE_UP_MS,
      },
    });
    const revocationRetry = startPeriodicJob({
      name: "revocation retry",
      intervalMs: 30_000,
      logger,
      run: async (signal) => {
        while (!signal.aborted && (await deletion.retryDue(REVOCATION_BATCH)) === REVOCATION_BATCH);
      },
    });
    closers.add("revocation retry", () => revocationRetry.stop());
    const sync = createIntegrationSync({ store: integrations, tokenService, providers, audit, logger });
    const sessions = createSessionRepository(database.sql);
    const cleanup = startPeriodicJob({
      name: "cleanup",
      intervalMs: 600_000,
      logger,
      run: async (signal) => {
        const counts = await runCleanup(
          {
            purgeExpiredSessions: (before, limit) => sessions.purgeExpired(before, limit),
            purgeTombstones: (before, limit) => integrations.purgeTombstones(before, limit),
            purgeChangeEvents: (before, limit) => changeFeed.purgeOlderThan(before, limit),
            eraseDeadRefreshTokens: (before, limit) => integrations.eraseDeadRefreshTokens(before, limit),
          },
          config.retention,
          clock,
          signal,
        );
        logCleanup(logger, counts);
      },
    });
    closers.add("cleanup", () => cleanup.stop());
    const statusQueries = createStatusQueries(database.sql);

    let authorizationSettings = config.authorization;
    const authorization = createAuthorizationService({
      providers: { list: () => providers.profiles(), client: (id) => providers.get(id), redirectUri: (id) => providers.redirectUri(id) },
      policy: () => policyHolder.current(),
      sessions,
      integrations,
      cipher,
      audit,
      settings: () => authorizationSettings,
      publicUrl: config.publicUrl,
      clock,
      limitStart: (userId) => enforceStartAuthorizationLimit(limiter, limits.startAuthorizationPerUser, userId),
      logger,
      onIntegrationChanged: (id) => {
        tokenService.evict(id);
        void notifications.publish({ integrationId: id, version: 0 });
      },
    });
    const integrationAccess = createIntegrationAccess(policyHolder);
    const brokerBindings: ServiceBinding[] = [
      bindService(
        ProviderService,
        createProviderServiceHandlers({ providers: () => providerConfigs, redirectUri: providers.redirectUri }),
      ),
      bindService(
        StatusService,
        createStatusServiceHandlers({
          version: config.version,
          startedAt,
          clock,
          providerIds: () => config.providers.map((p) => p.id),
          pingDatabase: () => database.ping(),
          checkKeyService: () => cipher.check(),
          migrationStatus: () => migrationStatus(database.sql),
          countIntegrations: () => integrations.countByStatus(),
          isDraining: () => draining,
          auditChainIntact: async () => auditMonitor.intact(),
          refreshOutcomesSince: (since) => statusQueries.refreshOutcomesSince(since),
          nextProactiveRefresh: () => statusQueries.nextProactiveRefresh(config.tokens.proactiveRefreshWindowSeconds * 1000),
          circuitStates: () => tokenService.circuitStates(),
        }),
      ),
      bindService(
        TokenService,
        createTokenServiceHandlers({
          tokenService,
          access: integrationAccess,
          defaultMinValidForSeconds: config.tokens.defaultMinValidForSeconds,
        }),
      ),
      bindService(AuthorizationService, createAuthorizationServiceHandlers({ service: authorization })),
      bindService(
        IntegrationService,
        createIntegrationServiceHandlers({ integrations, tokenService, access: integrationAccess, deletion, sync, changes: changeFeed }),
      ),
      bindService(AuditService, createAuditServiceHandlers({ auditTrail: createAuditTrailReader(database.sql) })),
    ];
    const servedServices: DescService[] = [...brokerBindings.map((b) => b.service), Health];
    const health = createHealth(brokerBindings.map((b) => b.service.typeName));
    const bindings = [...brokerBindings, health.binding, ...createReflectionBindings(servedServices)].map((b) =>
      interceptBinding(b, interceptors, shutdown.signal),
    );

    // Once current, the schema stays so for this build: no query per probe (while the database
    // is away, such a query waited out the probe's whole budget).
    let schemaIsCurrent = false;
    const schemaCurrent = async () => {
      if (schemaIsCurrent) return;
      await databaseHealth.check();
      const status = await migrationStatus(database.sql);
      if (status.applied < latestMigrationVersion()) throw new Error(`schema at version ${status.applied}, this build needs ${status.latest}`);
      schemaIsCurrent = true;
    };

    await reservation.release();
    const grpcListener: GrpcListener = await startGrpcListener({
      address: config.grpcAddress,
      bindings,
      tls: config.grpcTls,
      maxRequestBytes,
      admission,
    });
    closers.add("gRPC listener", () => grpcListener.close(config.shutdownGraceMs));
    const httpListener: HttpListener = await startHttpListener({
      address: config.httpAddress,
      bindings,
      maxRequestBytes,
      admission,
      routes: [
        // Koa (inside oidc-provider) also runs on the HTTP/2 compatibility objects.
        ...(sandbox
          ? [(req: HttpRequest, res: HttpResponse) => sandbox.handle(req as IncomingMessage, res as ServerResponse)]
          : []),
        createOAuthCallbackRoute({ service: authorization, publicUrl: config.publicUrl, logger }),
        webPageRoute(),
        healthzRoute(),
        readyzRoute([
          {
            name: "draining",
            check: async () => {
              if (draining) throw new Error("shutting down");
            },
          },
          { name: "database", check: () => databaseHealth.check() },
          { name: "migrations", check: schemaCurrent },
          { name: "calls", check: () => watchdog.check() },
          { name: "key_service", check: () => cipher.check() },
        ]),
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

    const drain = () => {
      if (draining) return;
      draining = true;
      health.setAll(ServingStatus.NOT_SERVING);
      logger.info({ inFlight: observe.inFlight.count }, "draining: refusing new calls");
    };

    logger.info(
      { grpc: grpcListener.port, http: httpListener.port, version: config.version, keyService: cipher.kind },
      "oauth-broker listening",
    );

    return {
      grpcPort: grpcListener.port,
      httpPort: httpListener.port,
      metrics,
      database,
      cipher,
      drain,
      jobs: { revocations: revocationRetry, cleanup, proactiveRefresh: refresher },
      reload(next) {
        policyHolder.replace(createRpcPolicy({ policies: next.policies, providers: next.providers }));
        limits = next.limits;
        authorizationSettings = next.authorization;
        logger.info({ policies: next.policies.length }, "policies and limits reloaded");
      },
      async stop() {
        drain();
        const grace = new Promise<void>((resolve) => setTimeout(resolve, config.shutdownGraceMs).unref());
        await Promise.race([observe.inFlight.idle(), grace]);
        shutdown.abort();
        await closers.closeAll(logger);
      },
    };
  } catch (error) {
    await closers.closeAll(logger);
    throw error;
  }
}
