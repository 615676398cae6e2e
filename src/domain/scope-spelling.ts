/**
 * Requested scopes in configuration spelling. Providers grant scopes in their own spelling
 * (Google's `https://www.googleapis.com/auth/userinfo.email` for `email`, Microsoft's
 * `https://graph.microsoft.com/mail.read` for `Mail.Read`), and an integration lists them so. A
 * caller that asks for an integration's granted scopes again (the page's Reconnect) must get
 * the same grant, so each requested scope is read as the allowed scope it names.
 */
import { allowedScopesOf, checkRequestedScopes } from "./policy.js";
import type { ProviderClient } from "./ports.js";
import type { ProviderProfile } from "./provider-profile.js";

/** Scopes the OpenID clients add themselves where the provider needs or advertises them. */
const PROTOCOL_SCOPES: ReadonlySet<string> = new Set(["openid", "offline_access"]);
const NO_SCOPES: ReadonlySet<string> = new Set();

/**
 * The scopes to ask the provider for: the defaults when none are requested, else each requested
 * scope as the configuration spells it (kept when allowed as written, else the allowed scope
 * with the same `canonicalScope`). A protocol scope (`openid`, `offline_access`) that the
 * configuration does not list is left to the OpenID client, which adds it where the provider
 * needs or advertises it. Any other scope allowed in no spelling is refused by name and position.
 */
export function requestedScopes(config: Pick<ProviderProfile, "id" | "defaultScopes" | "allowedScopes" | "oidc">, client: Pick<ProviderClient, "canonicalScope">, scopes: readonly string[]): string[] {
  if (scopes.length === 0) return [...config.defaultScopes];
  const allowed = allowedScopesOf(config);
  const canonical = (scope: string): string => client.canonicalScope?.(scope) ?? scope;
  const byCanonical = new Map<string, string>();
  for (const scope of allowed) if (!byCanonical.has(canonical(scope))) byCanonical.set(canonical(scope), scope);
  const spelled = scopes.map((scope) => (allowed.has(scope) ? scope : (byCanonical.get(canonical(scope)) ?? scope)));
  checkRequestedScopes(config, spelled, config.oidc ? PROTOCOL_SCOPES : NO_SCOPES);
  const kept = [...new Set(spelled.filter((scope) => allowed.has(scope)))];
  return kept.length === 0 ? [...config.defaultScopes] : kept;
}
