/**
 * What the domain knows of a configured provider: its capabilities, never its kind, endpoints
 * or credentials. providers/provider-profile.ts builds one from each provider's configuration,
 * so knowledge of particular providers (who speaks OIDC, who needs a consent prompt for a
 * refresh token) stays in providers/.
 */
export interface ProviderProfile {
  readonly id: string;
  /** Requested when the caller names no scopes (so always allowed). */
  readonly defaultScopes: readonly string[];
  /** Scopes a caller may ask for beyond the defaults. */
  readonly allowedScopes: readonly string[];
  /** RFC 7636: the authorization request carries a code challenge, the exchange its verifier. */
  readonly pkce: boolean;
  /** Speaks OpenID Connect, where a nonce binds the ID token to the request. */
  readonly oidc: boolean;
  /**
   * Issues a refresh token only at the first consent unless the consent page is shown again
   * (`prompt=consent`): a user without a stored refresh token must see it (providers.md).
   */
  readonly refreshTokenOnlyWithConsent: boolean;
  /** Client credentials are configured, so flows with this provider can run. */
  readonly credentialsConfigured: boolean;
  /**
   * The OAuth client, at its authorization server, that holds this provider's grants; equal for
   * entries that share one grant per account (Google and YouTube on one Google client).
   * Undefined without a client id.
   */
  readonly grantHolder: string | undefined;
  /** Revoking one token ends the account's whole grant to the client, earlier scopes included. */
  readonly revocationEndsWholeGrant: boolean;
}

/** What scope checks read of a provider. */
export type ProviderScopes = Pick<ProviderProfile, "id" | "defaultScopes" | "allowedScopes">;
