/**
 * The flow's one-time values: the state, the PKCE verifier, the nonce and the browser binding
 * are 32 random bytes each; only hashes of the state (with the binding) are stored.
 */
import { createHash, randomBytes } from "node:crypto";

const RANDOM_BYTES = 32;

/** `sha256(state)`, or `sha256(state + "." + binding)` for a browser-bound flow; hex. */
export function stateHash(state: string, binding?: string): string {
  const input = binding === undefined ? state : `${state}.${binding}`;
  return createHash("sha256").update(input, "utf8").digest("hex");
}

/** The binding cookie's name for a provider (cookie-name safe, RFC 6265 §4.1.1). */
export function flowCookieName(provider: string): string {
  return `oauth_broker_flow_${provider.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

export function randomToken(): string {
  return randomBytes(RANDOM_BYTES).toString("base64url");
}
