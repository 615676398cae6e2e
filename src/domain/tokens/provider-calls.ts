/**
 * The refresh request at the provider: retried with backoff (exponential, full jitter) inside
 * the refresh's deadline, behind one circuit breaker per provider (circuit-breaker.ts), and never
 * sent while the provider has paused the broker (provider-pause.ts), on this replica or, through
 * the pause feed, on any other.
 */
import { BrokerError, isBrokerError } from "../errors.js";
import { epochMs, type Clock, type ProviderClient, type ProviderGrant, type ProviderPauseFeed, type Logger } from "../ports.js";
import type { Integration } from "../types.js";
import { fullJitterBackoff, sleep } from "../waiting.js";
import { createCircuitBreaker, type CircuitBreaker, type CircuitState } from "./circuit-breaker.js";
import { createProviderPauses } from "./provider-pause.js";
import { mayHaveBeenProcessed } from "./refresh-takeover.js";

/** Failures raised before a request was sent. */
export const NOT_SENT_REASONS: ReadonlySet<string> = new Set(["PROVIDER_CIRCUIT_OPEN"]);

export interface ProviderCallDeps {
  readonly providers: { get(id: string): ProviderClient | undefined };
  readonly clock: Clock;
  readonly logger: Logger;
  readonly pauseFeed?: ProviderPauseFeed | undefined;
  readonly settings: {
    readonly providerPause?: { readonly maxPauseMs: number; readonly backoffCapMs: number } | undefined;
    readonly breakerFailureThreshold?: number | undefined;
    readonly breakerCooldownMs?: number | undefined;
  };
  readonly events?: {
    refresh?(provider: string, result: string, seconds: number): void;
    circuit?(provider: string, state: CircuitState): void;
    providerPause?(provider: string, seconds: number): void;
  };
}

export interface ProviderCalls {
  /** Refreshes at the provider, at most `maxAttempts` times, giving up once `deadline` (epoch ms, on the clock) passes. */
  refresh(integration: Integration, refreshToken: string, deadline: number, maxAttempts?: number): Promise<ProviderGrant>;
  /** Throws `provider_rate_limited` while `provider` is paused: nothing is sent then. */
  checkPause(provider: string): void;
  /** False when the provider never rotates refresh tokens (ProviderClient.rotatesRefreshTokens); unknown counts as rotating. */
  rotatesRefreshTokens(provider: string): boolean;
  circuitStates(): ReadonlyMap<string, CircuitState>;
  /** Remaining pause (ms) of each provider that rate-limited the broker. */
  paused(): ReadonlyMap<string, number>;
  /** Stops listening to other replicas' pauses. */
  close(): void;
}

export function createProviderCalls(deps: ProviderCallDeps): ProviderCalls {
  const { clock, logger } = deps;
  const breakers = new Map<string, CircuitBreaker>();
  const pauses = createProviderPauses({
    clock,
    maxPauseMs: deps.settings.providerPause?.maxPauseMs ?? 300_000,
    backoffCapMs: deps.settings.providerPause?.backoffCapMs ?? 60_000,
    onPause: (notice, told) => {
      logger.warn(
        { provider: notice.provider, pauseMs: notice.remainingMs, retryAfterFromProvider: told },
        "the provider is rate limiting the broker: its token endpoint is paused on every replica",
      );
      deps.events?.providerPause?.(notice.provider, notice.remainingMs / 1000);
      void deps.pauseFeed?.publish(notice);
    },
  });
  const unsubscribePauses = deps.pauseFeed?.subscribe((notice) => pauses.adopt(notice));

  function breakerFor(provider: string): CircuitBreaker {
    let breaker = breakers.get(provider);
    if (!breaker) {
      breaker = createCircuitBreaker({
        name: provider,
        clock,
        failureThreshold: deps.settings.breakerFailureThreshold,
        cooldownMs: deps.settings.breakerCooldownMs,
        onStateChange: (state) => {
          logger.warn({ provider, state }, "provider circuit breaker changed state");
          deps.events?.circuit?.(provider, state);
        },
      });
      breakers.set(provider, breaker);
    }
    return breaker;
  }

  return {
    async refresh(integration, refreshToken, deadline, maxAttempts = Number.POSITIVE_INFINITY) {
      const provider = deps.providers.get(integration.provider);
      if (!provider) {
        throw new BrokerError("failed_precondition", `provider ${integration.provider} is not configured on this broker`, {
          reason: "PROVIDER_NOT_CONFIGURED",
          metadata: { provider: integration.provider },
        });
      }
      const breaker = breakerFor(integration.provider);
      const remainingMs = () => deadline - epochMs(clock);
      for (let attempt = 0; ; attempt++) {
        pauses.check(integration.provider);
        breaker.acquire();
        // A duration for the latency metric only: a monotonic clock, whatever the broker's clock says.
        const started = performance.now();
        try {
          const grant = await provider.refresh(refreshToken, { signal: AbortSignal.timeout(Math.max(1, remainingMs())) });
          breaker.success();
          pauses.succeeded(integration.provider);
          deps.events?.refresh?.(integration.provider, "success", (performance.now() - started) / 1000);
          return grant;
        } catch (error) {
          const code = isBrokerError(error) ? error.code : "provider_unavailable";
          deps.events?.refresh?.(integration.provider, code, (performance.now() - started) / 1000);
          // The provider answered (grant dead, misconfigured, rate limited): it is up.
          if (code === "integration_needs_reauth" || code === "provider_misconfigured" || code === "provider_rate_limited") {
            breaker.success();
            if (isBrokerError(error, "provider_rate_limited")) {
              const pausedMs = pauses.rateLimited(integration.provider, error);
              throw new BrokerError(error.code, error.message, { cause: error.cause, reason: error.reason, metadata: error.metadata, retryAfterMs: pausedMs });
            }
            throw error;
          }
          breaker.failure();
          const wait = fullJitterBackoff(attempt);
          // A request the provider may have processed is not sent again: it may have rotated the token.
          if (code !== "provider_unavailable" || mayHaveBeenProcessed(error) || attempt + 1 >= maxAttempts || wait >= remainingMs()) throw error;
          await sleep(wait);
        }
      }
    },
    checkPause(provider) {
      pauses.check(provider);
    },
    rotatesRefreshTokens(provider) {
      return deps.providers.get(provider)?.rotatesRefreshTokens !== false;
    },
    circuitStates() {
      return new Map([...breakers].map(([provider, breaker]) => [provider, breaker.state()]));
    },
    paused() {
      return pauses.paused();
    },
    close() {
      unsubscribePauses?.();
    },
  };
}
