/**
 * The in-process cache of decrypted token sets: bounded (least recently used goes first) and
 * never serving an entry past its token's expiry. Plaintext lives only here, in memory.
 */
import type { TokenSet } from "../types.js";

export interface CachedTokens {
  readonly tokens: TokenSet;
  /** Token-set version the entry was read at; notifications of newer versions evict it. */
  readonly version: number;
}

export interface TokenCache {
  get(integrationId: string, nowMs: number): CachedTokens | undefined;
  set(integrationId: string, entry: CachedTokens): void;
  /** Evicts the entry unless it is already at `version` or newer. */
  evict(integrationId: string, version?: number): void;
  readonly size: number;
}

export function createTokenCache(maxEntries: number): TokenCache {
  const entries = new Map<string, CachedTokens>();
  return {
    get(integrationId, nowMs) {
      const entry = entries.get(integrationId);
      if (!entry) return undefined;
      if (entry.tokens.expiresAt.getTime() <= nowMs) {
        entries.delete(integrationId);
        return undefined;
      }
      // Re-insert: Map order is the recency order.
      entries.delete(integrationId);
      entries.set(integrationId, entry);
      return entry;
    },
    set(integrationId, entry) {
      entries.delete(integrationId);
      entries.set(integrationId, entry);
      while (entries.size > maxEntries) {
        const oldest = entries.keys().next().value;
        if (oldest === undefined) break;
        entries.delete(oldest);
      }
    },
    evict(integrationId, version) {
      const entry = entries.get(integrationId);
      if (entry && (version === undefined || entry.version < version)) entries.delete(integrationId);
    },
    get size() {
      return entries.size;
    },
  };
}
