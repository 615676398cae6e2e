/**
 * Assembles a running broker from a validated configuration, in start order; shutdown runs the
 * same steps backwards (`Closers`). `main.ts` adds the process concerns (signals, exit codes);
 * tests and benchmarks start brokers in-process through here. Each step's wiring is in the
 * module of its area.
 */
import { systemClock } from "../domain/ports.js";
import { createRateLimiter } from "../domain/rate-limiter.js";
import { ServingStatus } from "../transport/health.js";
import { Closers } from "./closers.js";
import { createDomainServices, openTokenService } from "./domain.js";
import { startAuditRetention, startDisclosureCounts, startHousekeeping, startProactiveRefresh } from "./jobs.js";
import { createDrainState, createLiveSettings } from "./live-settings.js";
import { createTelemetry, startErrorReporter } from "./observability.js";
import { openOutboundTransport, openProviders } from "./providers.js";
import { createReadiness } from "./readiness.js";
import { openAuditing, openChangeFeed, openKeyService, openStorage, openTokenFeeds } from "./storage.js";
import { openAuthenticator, reserveAddresses, startTransport } from "./transport.js";
import type { RunningBroker, StartOptions } from "./running-broker.js";
import { replicaIdentity, type Wiring } from "./wiring.js";

export async function startBroker(options: StartOptions): Promise<RunningBroker> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const startedAt = clock.now();
  const closers = new Closers();
  const wiring: Wiring = { config, logger, clock, closers, replicaId: replicaIdentity() };
  try {
    // Each step registers what it started with `closers`: reordering these lines reorders shutdown.
    const errorReporter = startErrorReporter(wiring);
    const outbound = openOutboundTransport(wiring);
    const reservation = await reserveAddresses(wiring);
    const storage = await openStorage(wiring);
    const telemetry = createTelemetry(wiring, storage);
    const { metrics, databaseHealth } = telemetry;
    const cipher = await openKeyService(wiring, metrics, outbound);
    const authenticator = await openAuthenticator(wiring);
    const live = createLiveSettings(config);
    const drainState = createDrainState();
    const limiter = createRateLimiter({ clock });
    const providers = await openProviders(wiring, metrics, outbound);
    const auditing = await openAuditing(wiring, storage, metrics);
    startAuditRetention(wiring, storage);
    const feeds = await openTokenFeeds(wiring, storage);
    const tokenService = openTokenService(wiring, { storage, cipher, providers, auditing, feeds, databaseHealth, metrics });
    const refresher = startProactiveRefresh(wiring, storage, tokenService);
    const disclosureCounts = startDisclosureCounts(wiring, tokenService);
    const changeFeed = openChangeFeed(wiring, storage);
    const services = createDomainServices(wiring, { storage, cipher, providers, auditing, feeds, tokenService, live, limiter });
    const { revocationRetry, cleanup } = startHousekeeping(wiring, storage, changeFeed, services.deletion);
    const readiness = createReadiness(wiring, startedAt, {
      storage,
      cipher,
      telemetry,
      auditMonitor: auditing.auditMonitor,
      tokenService,
      drain: drainState,
    });
    const { grpcListener, httpListener, health, observe, shutdown } = await startTransport(wiring, {
      reservation,
      errorReporter,
      telemetry,
      authenticator,
      securityAudit: auditing.securityAudit,
      live,
      drain: drainState,
      limiter,
      storage,
      providers,
      tokenService,
      services,
      changeFeed,
      readiness,
    });

    const drain = () => {
      if (!drainState.begin()) return;
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
      database: storage.database,
      cipher,
      drain,
      jobs: { revocations: revocationRetry, cleanup, proactiveRefresh: refresher, disclosureCounts },
      reload(next) {
        live.reload(next);
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
