/**
 * What the token service remembers about integrations between calls, besides their tokens:
 * - which integration a selector named (id, or user + provider + account), for a short while;
 * - how long the provider's tokens lived at the last refresh, to refuse a `min_valid_for` no
 *   refresh can satisfy without asking the provider again.
 * Both are bounded (oldest first out) and forgotten at once when the integration changes.
 */
import { epochMs, type Clock } from "../ports.js";
import type { Integration } from "../types.js";

export interface ResolvedIntegrations {
  /** The integration `key` named, while it is recent enough to reuse. */
  get(key: string): Integration | undefined;
  remember(key: string, integration: Integration): void;
  /** Forgets every key that named the integration. */
  forget(integrationId: string): void;
}

export function createResolvedIntegrations(options: { maxEntries: number; ttlMs: number; clock: Clock }): ResolvedIntegrations {
  const resolved = new Map<string, { integration: Integration; until: number }>();
  const keysOf = new Map<string, Set<string>>();
  return {
    get(key) {
      const hit = resolved.get(key);
      return hit && hit.until > epochMs(options.clock) ? hit.integration : undefined;
    },
    remember(key, integration) {
      if (resolved.size >= options.maxEntries) {
        const oldest = resolved.keys().next().value;
        const evicted = oldest === undefined ? undefined : resolved.get(oldest);
        if (oldest !== undefined && evicted !== undefined) {
          resolved.delete(oldest);
          // The reverse index shrinks with the cache; otherwise it keeps an entry for every
          // integration ever resolved (bench/large-table.ts shows the growth).
          const keys = keysOf.get(evicted.integration.id);
          keys?.delete(oldest);
          if (keys?.size === 0) keysOf.delete(evicted.integration.id);
        }
      }
      resolved.set(key, { integration, until: epochMs(options.clock) + options.ttlMs });
      let keys = keysOf.get(integration.id);
      if (!keys) keysOf.set(integration.id, (keys = new Set()));
      keys.add(key);
    },
    forget(integrationId) {
      for (const key of keysOf.get(integrationId) ?? []) resolved.delete(key);
      keysOf.delete(integrationId);
    },
  };
}

export interface TokenLifetimes {
  /** Records the lifetime of a token just issued. */
  learn(integrationId: string, expiresAt: Date): void;
  /** The lifetime learned, while it is recent enough to trust. */
  known(integrationId: string): number | undefined;
  forget(integrationId: string): void;
}

export function createTokenLifetimes(options: { maxEntries: number; trustMs: number; clock: Clock }): TokenLifetimes {
  const lifetimes = new Map<string, { ms: number; learnedAt: number }>();
  return {
    learn(integrationId, expiresAt) {
      const now = epochMs(options.clock);
      lifetimes.delete(integrationId);
      if (lifetimes.size >= options.maxEntries) lifetimes.delete(lifetimes.keys().next().value ?? "");
      lifetimes.set(integrationId, { ms: expiresAt.getTime() - now, learnedAt: now });
    },
    known(integrationId) {
      const known = lifetimes.get(integrationId);
      if (!known) return undefined;
      if (known.learnedAt + options.trustMs <= epochMs(options.clock)) {
        lifetimes.delete(integrationId);
        return undefined;
      }
      return known.ms;
    },
    forget(integrationId) {
      lifetimes.delete(integrationId);
    },
  };
}
