/**
 * The capability profile the domain sees of a configured provider (domain/provider-profile.ts),
 * derived from its kind and settings. Provider-specific knowledge lives here, not in domain/.
 */
import type { ProviderConfig, ProviderKind } from "../config/types.js";
import type { ProviderProfile } from "../domain/provider-profile.js";

/** Kinds that issue a refresh token only at first consent unless `prompt=consent` (providers.md). */
const CONSENT_FOR_REFRESH_TOKEN: ReadonlySet<ProviderKind> = new Set(["google", "youtube"]);
/** Kinds whose revocation ends the account's whole grant to the client (Google's endpoint; providers.md). */
const REVOCATION_ENDS_WHOLE_GRANT: ReadonlySet<ProviderKind> = new Set(["google", "youtube"]);
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
    grantHolder: grantHolder(config),
    revocationEndsWholeGrant: REVOCATION_ENDS_WHOLE_GRANT.has(config.kind),
  };
}

/**
 * One OAuth client at one authorization server holds one grant per account: Google and YouTube
 * entries with the same client id share Google's, others share only with their own kind at the
 * same server.
 */
function grantHolder(config: ProviderConfig): string | undefined {
  if (config.clientId === undefined || config.clientId === "") return undefined;
  if (REVOCATION_ENDS_WHOLE_GRANT.has(config.kind)) return `google ${config.clientId}`;
  const server = config.endpoints.issuer ?? config.endpoints.token ?? config.tenant ?? "";
  return `${config.kind} ${server} ${config.clientId}`;
}
