/**
 * The lifetime bound on caller tokens. `exp` alone only says when a token stops working; an
 * issuer (or a stolen signing key) can mint one that works for ten years. The bound is checked
 * on the verified claims, so the refusal reason describes a token the issuer really signed.
 */
import type { JWTPayload } from "jose";

export interface TokenLifetimeBound {
  readonly maxTokenLifetimeSeconds: number;
  /** Allowed only where the clocks meet: `exp − now` and an `iat` slightly ahead of the broker's clock. */
  readonly clockSkewSeconds: number;
}

export interface LifetimeRefusal {
  /** `not_yet_valid` for a token that claims to be issued later than now; `lifetime_too_long` otherwise. */
  readonly reason: "lifetime_too_long" | "not_yet_valid";
  readonly message: string;
}

/**
 * Why the token's lifetime is unacceptable, or `undefined` when it is not. The lifetime is
 * measured from `min(iat, now)`: `iat` is the issuer's word, so a future `iat` must not shorten
 * the measure (`iat = exp − 60` with `exp` ten years ahead would otherwise pass). jose refuses a
 * future `iat` only with `maxTokenAge`, which the broker does not use, so it is refused here.
 */
export function lifetimeRefusal(payload: JWTPayload, bound: TokenLifetimeBound, nowMs: number): LifetimeRefusal | undefined {
  const exp = payload.exp;
  if (typeof exp !== "number") return undefined;
  const max = bound.maxTokenLifetimeSeconds;
  const nowS = nowMs / 1000;
  const iat = typeof payload.iat === "number" ? payload.iat : undefined;
  if (iat !== undefined && iat > nowS + bound.clockSkewSeconds) {
    return {
      reason: "not_yet_valid",
      message: `token issued ${Math.ceil(iat - nowS)} s in the future, beyond the ${bound.clockSkewSeconds} s clock skew`,
    };
  }
  if (iat !== undefined) {
    // iat ≤ now + skew here, so exp − iat ≤ max also bounds exp − now by max + skew.
    const lifetime = exp - iat;
    return lifetime > max
      ? { reason: "lifetime_too_long", message: `token lifetime exp - iat = ${Math.floor(lifetime)} s exceeds the issuer's ${max} s` }
      : undefined;
  }
  const remaining = exp - nowS;
  if (remaining > max + bound.clockSkewSeconds) {
    return { reason: "lifetime_too_long", message: `token without iat expires in ${Math.floor(remaining)} s, beyond the issuer's ${max} s` };
  }
  return undefined;
}
