/**
 * Token-bucket rate limits, in memory, per replica: with N replicas behind a load balancer a
 * caller may get up to N times the configured rate. Memory is bounded: a bucket that has refilled
 * carries no information and is dropped, and past `maxKeys` the least recently used goes.
 */
import { BrokerError } from "./errors.js";
import { epochMs, type Clock } from "./ports.js";

export interface RateLimit {
  /** Sustained requests per second. */
  readonly ratePerSecond: number;
  readonly burst: number;
}

export type TakeResult = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterMs: number };

const ALLOWED: TakeResult = Object.freeze({ allowed: true });

export interface RateLimiter {
  /** Takes one token from `key`'s bucket, created full on first use. */
  take(key: string, limit: RateLimit): TakeResult;
  /** Buckets held now (for tests and metrics). */
  size(): number;
}

export interface RateLimiterOptions {
  readonly clock: Clock;
  /** Most buckets kept; default 100,000. */
  readonly maxKeys?: number | undefined;
  /** How often full buckets are swept out; default 60 s. */
  readonly sweepIntervalMs?: number | undefined;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
  /** When the bucket will be full again if nothing is taken: then it can be forgotten. */
  fullAt: number;
}

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const maxKeys = Math.max(1, options.maxKeys ?? 100_000);
  const sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
  // Map iteration follows insertion order; re-inserting on use makes it least-recently-used first.
  const buckets = new Map<string, Bucket>();
  let lastSweep = epochMs(options.clock);

  function sweep(now: number): void {
    for (const [key, bucket] of buckets) if (bucket.fullAt <= now) buckets.delete(key);
    lastSweep = now;
  }

  function take(key: string, limit: RateLimit): TakeResult {
    // A non-positive rate disables the limit (documented in the configuration reference).
    if (!(limit.ratePerSecond > 0) || !(limit.burst > 0)) return ALLOWED;
    const now = epochMs(options.clock);
    if (now - lastSweep >= sweepIntervalMs) sweep(now);

    const existing = buckets.get(key);
    let tokens: number;
    if (existing === undefined) {
      tokens = limit.burst;
    } else {
      buckets.delete(key);
      const elapsedMs = Math.max(0, now - existing.updatedAt);
      tokens = Math.min(limit.burst, existing.tokens + (elapsedMs * limit.ratePerSecond) / 1000);
    }

    let result: TakeResult;
    if (tokens >= 1) {
      tokens -= 1;
      result = ALLOWED;
    } else {
      result = { allowed: false, retryAfterMs: Math.max(1, Math.ceil(((1 - tokens) * 1000) / limit.ratePerSecond)) };
    }

    const fullAt = now + Math.ceil(((limit.burst - tokens) * 1000) / limit.ratePerSecond);
    // Taken on every call: the bucket is updated in place (and moved to the end) rather than replaced.
    const bucket = existing ?? { tokens, updatedAt: now, fullAt };
    bucket.tokens = tokens;
    bucket.updatedAt = now;
    bucket.fullAt = fullAt;
    buckets.set(key, bucket);
    if (buckets.size > maxKeys) evict(now);
    return result;
  }

  function evict(now: number): void {
    // Prefer buckets that have refilled (no information lost), oldest first; then plain LRU.
    let scanned = 0;
    for (const [key, bucket] of buckets) {
      if (buckets.size <= maxKeys || scanned++ >= 64) break;
      if (bucket.fullAt <= now) buckets.delete(key);
    }
    for (const key of buckets.keys()) {
      if (buckets.size <= maxKeys) break;
      buckets.delete(key);
    }
  }

  return { take, size: () => buckets.size };
}

/** `rate_limited` (RESOURCE_EXHAUSTED with RetryInfo on the wire). */
export function rateLimitedError(what: string, retryAfterMs: number): BrokerError {
  return new BrokerError("rate_limited", `rate limit exceeded for ${what}; retry after ${retryAfterMs} ms`, {
    retryAfterMs,
    reason: "RATE_LIMITED",
  });
}
