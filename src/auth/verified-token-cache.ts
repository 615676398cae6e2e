/**
 * Bearer tokens this process has already verified, so a caller's every call does not pay for a
 * signature check (an Ed25519 or RSA verification costs more than the rest of a warm
 * GetAccessToken). What makes a hit as safe as a full verification is in `authenticator.ts`:
 * an entry serves a call only before the token's `exp` and only while the issuer's key resolver
 * still hands out the very key object that verified it — a JWKS re-fetch builds new key
 * objects, so a rotation invalidates every entry of that issuer and a removed key is refused at
 * once. Failures are never cached.
 *
 * Entries are keyed by the SHA-256 of the token and keep none of its signature, so the cache
 * holds no credential, and bounded: the least recently verified entry goes first.
 */
import { hash } from "node:crypto";

export const VERIFIED_TOKEN_CACHE_MAX_ENTRIES = 10_000;

export interface VerifiedTokenCache<E extends { readonly expiresAtMs: number }> {
  /** The digest a token is cached under. */
  keyOf(token: string): string;
  /** The entry for `key` while it has not expired at `nowMs`. */
  get(key: string, nowMs: number): E | undefined;
  set(key: string, entry: E): void;
  delete(key: string): void;
  readonly size: number;
}

export function createVerifiedTokenCache<E extends { readonly expiresAtMs: number }>(maxEntries: number): VerifiedTokenCache<E> {
  const entries = new Map<string, E>();
  return {
    // One-shot hashing: no Hash object per call.
    keyOf: (token) => hash("sha256", token, "base64url"),
    get(key, nowMs) {
      const entry = entries.get(key);
      if (entry === undefined) return undefined;
      if (entry.expiresAtMs <= nowMs) {
        entries.delete(key);
        return undefined;
      }
      return entry;
    },
    set(key, entry) {
      if (maxEntries <= 0) return;
      entries.delete(key);
      while (entries.size >= maxEntries) {
        const oldest = entries.keys().next().value;
        if (oldest === undefined) break;
        entries.delete(oldest);
      }
      entries.set(key, entry);
    },
    delete(key) {
      entries.delete(key);
    },
    get size() {
      return entries.size;
    },
  };
}
