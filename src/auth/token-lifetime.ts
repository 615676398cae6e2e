/**
 * The lifetime bound on caller tokens. `exp` alone only says when a token stops working; an
 * issuer (or a stolen signing key) can mint one that works for ten years. The bound is checked
 * on the verified claims, so the refusal reason describes a token the issuer really signed.
 */
import type { JWTPayload } from "jose";

export interface TokenLifetimeBound {
  readonly maxTokenLifetimeSeconds: number;
  /** Allowed only where the clocks meet: `exp − now` when the token has no `iat`. */
  readonly clockSkewSeconds: number;
}

/**
 * Why the token lives too long, or `undefined` when it does not: `exp − iat` when the token says
 * when it was issued, else `exp − now` (the most the broker can still see of its life).
 */
export function excessiveLifetime(payload: JWTPayload, bound: TokenLifetimeBound, nowMs: number): string | undefined {
  const exp = payload.exp;
  if (typeof exp !== "number") return undefined;
  const max = bound.maxTokenLifetimeSeconds;
  if (typeof payload.iat === "number") {
    const lifetime = exp - payload.iat;
    return lifetime > max ? `token lifetime exp - iat = ${Math.floor(lifetime)} s exceeds the issuer's ${max} s` : undefined;
  }
  const remaining = exp - nowMs / 1000;
  return remaining > max + bound.clockSkewSeconds
    ? `token without iat expires in ${Math.floor(remaining)} s, beyond the issuer's ${max} s`
    : undefined;
}
