/**
 * Scopes in configuration spelling. Providers grant scopes in their own spelling (Google's
 * `https://www.googleapis.com/auth/userinfo.email` for `email`, Microsoft's
 * `https://graph.microsoft.com/mail.read` for `Mail.Read`), and an integration lists them so. A
 * caller that asks for an integration's granted scopes again (the page's Reconnect) must get
 * the same grant, so each requested scope is read as the allowed scope it names.
 */
import type { ProviderConfig, ProviderKind } from "../config/types.js";
import { allowedScopesOf } from "./policy.js";
import type { ProviderClient } from "./ports.js";

/** Scopes the OpenID clients add themselves where the provider needs or advertises them. */
const PROTOCOL_SCOPES: ReadonlySet<string> = new Set(["openid", "offline_access"]);
const OPENID_KINDS: ReadonlySet<ProviderKind> = new Set(["google", "youtube", "microsoft", "oidc", "sandbox"]);

/**
 * Each scope as the configuration spells it: kept when it is allowed as written, else the allowed
 * scope with the same `canonicalScope`. A protocol scope (`openid`, `offline_access`) the
 * configuration does not list is left to the OpenID client, which adds it where the provider
 * needs or advertises it. Anything else is kept as written, for the allowed-scopes check to name.
 */
export function inConfigurationSpelling(
  config: ProviderConfig,
  client: Pick<ProviderClient, "canonicalScope">,
  scopes: readonly string[],
): string[] {
  const allowed = allowedScopesOf(config);
  const canonical = (scope: string): string => client.canonicalScope?.(scope) ?? scope;
  const byCanonical = new Map<string, string>();
  for (const scope of allowed) if (!byCanonical.has(canonical(scope))) byCanonical.set(canonical(scope), scope);
  const spelled: string[] = [];
  for (const scope of scopes) {
    if (allowed.has(scope)) spelled.push(scope);
    else if (byCanonical.has(canonical(scope))) spelled.push(byCanonical.get(canonical(scope)) ?? scope);
    else if (!(OPENID_KINDS.has(config.kind) && PROTOCOL_SCOPES.has(scope))) spelled.push(scope);
  }
  return [...new Set(spelled)];
}
