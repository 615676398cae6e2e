/**
 * A per-provider circuit breaker: after `failureThreshold` consecutive failures the circuit
 * opens and calls fail fast (UNAVAILABLE with the remaining cooldown as RetryInfo) instead of
 * piling onto a provider that is down; after the cooldown one probe call is let through.
 */
import { BrokerError } from "../errors.js";
import { epochMs, type Clock } from "../ports.js";

export type CircuitState = "closed" | "open" | "half_open";

export interface CircuitBreaker {
  state(): CircuitState;
  /** Throws `provider_unavailable` while open (or while a half-open probe is running). */
  acquire(): void;
  success(): void;
  failure(): void;
}

export function createCircuitBreaker(options: {
  name: string;
  clock: Clock;
  failureThreshold?: number;
  cooldownMs?: number;
  onStateChange?: (state: CircuitState) => void;
}): CircuitBreaker {
  const threshold = options.failureThreshold ?? 5;
  const cooldownMs = options.cooldownMs ?? 30_000;
  let failures = 0;
  let openedAt = 0;
  let current: CircuitState = "closed";
  let probing = false;
  const move = (next: CircuitState) => {
    if (next === current) return;
    current = next;
    options.onStateChange?.(next);
  };
  const state = (): CircuitState => {
    if (current === "open" && epochMs(options.clock) - openedAt >= cooldownMs) move("half_open");
    return current;
  };
  return {
    state,
    acquire() {
      const now = state();
      if (now === "closed") return;
      if (now === "half_open" && !probing) {
        probing = true;
        return;
      }
      const remaining = Math.max(0, cooldownMs - (epochMs(options.clock) - openedAt));
      throw new BrokerError("provider_unavailable", `${options.name} is failing; calls are paused for ${Math.ceil(remaining / 1000)} s`, {
        reason: "PROVIDER_CIRCUIT_OPEN",
        metadata: { provider: options.name },
        retryAfterMs: remaining || 1_000,
      });
    },
    success() {
      failures = 0;
      probing = false;
      move("closed");
    },
    failure() {
      probing = false;
      failures += 1;
      if (current === "half_open" || failures >= threshold) {
        openedAt = epochMs(options.clock);
        move("open");
      }
    },
  };
}
