/**
 * The capability profile the domain sees of a configured provider (domain/provider-profile.ts),
 * derived from its kind and settings. Provider-specific knowledge lives here, not in domain/.
 */
import type { ProviderConfig, ProviderKind } from "../config/types.js";
import type { ProviderProfile } from "../domain/provider-profile.js";

/** Kinds that issue a refresh token only at first consent unless `prompt=consent` (providers.md). */
const CONSENT_FOR_REFRESH_TOKEN: ReadonlySet<ProviderKind> = new Set(["google", "youtube"]);
/** Kinds that speak OpenID Connect. */
const OIDC_KINDS: ReadonlySet<ProviderKind> = new Set(["google", "youtube", "microsoft", "oidc", "sandbox"]);

/**
 * Whether flows with the provider can run: a client id with a secret (or public-client auth);
 * the sandbox fills in its own credentials when it starts.
 */
export function credentialsConfigured(config: ProviderConfig): boolean {
  return (
    config.kind === "sandbox" ||
    (config.clientId !== undefined && config.clientId !== "" && (config.clientSecret !== undefined || config.clientAuthMethod === "none"))
  );
}

export function providerProfile(config: ProviderConfig): ProviderProfile {
  return {
    id: config.id,
    defaultScopes: config.defaultScopes,
    allowedScopes: config.allowedScopes,
    pkce: config.pkce,
    oidc: OIDC_KINDS.has(config.kind),
    refreshTokenOnlyWithConsent: CONSENT_FOR_REFRESH_TOKEN.has(config.kind),
    credentialsConfigured: credentialsConfigured(config),
  };
}
