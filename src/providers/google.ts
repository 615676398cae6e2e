/**
 * Google (OpenID Connect). A refresh token only comes with `access_type=offline`, and only at
 * the first consent unless `prompt=consent`; `include_granted_scopes=true` keeps earlier grants
 * (incremental consent), so the granted `scope` must be read back from the token response.
 */
import type { ProviderConfig } from "../config/types.js";
import type { ExternalAccount } from "../domain/types.js";
import type { JsonObject } from "./json-request.js";
import { attributes, claim, consentPrompt, userinfoAccount, type OpenIdTemplate } from "./provider-template.js";

export const GOOGLE_ISSUER = "https://accounts.google.com";

/** providers.md: the endpoints Google's discovery document advertises, known up front. */
export const GOOGLE_ENDPOINTS = {
  authorization: "https://accounts.google.com/o/oauth2/v2/auth",
  token: "https://oauth2.googleapis.com/token",
  revocation: "https://oauth2.googleapis.com/revoke",
  userinfo: "https://openidconnect.googleapis.com/v1/userinfo",
} as const;

/** Authorization parameters shared by Google and YouTube. */
export function googleAuthorizationParams(input: { forceConsent?: boolean | undefined }): Record<string, string> {
  return { access_type: "offline", include_granted_scopes: "true", ...consentPrompt(input) };
}

/**
 * Google answers the OpenID shorthands with their full names in the token response's `scope`
 * (`email` is granted as `https://www.googleapis.com/auth/userinfo.email`): one spelling for both.
 */
const GOOGLE_SCOPE_ALIASES: Readonly<Record<string, string>> = {
  "https://www.googleapis.com/auth/userinfo.email": "email",
  "https://www.googleapis.com/auth/userinfo.profile": "profile",
};

export function googleCanonicalScope(scope: string): string {
  return GOOGLE_SCOPE_ALIASES[scope] ?? scope;
}

/** The account from ID token or userinfo claims: `sub` is stable, the e-mail is for display. */
export function googleAccount(claims: JsonObject): ExternalAccount | undefined {
  const sub = claim(claims, "sub");
  if (sub === undefined) return undefined;
  const email = claim(claims, "email");
  return { id: sub, name: email ?? claim(claims, "name") ?? sub, attributes: attributes({ email, hd: claim(claims, "hd") }) };
}

export function googleTemplate(_config: ProviderConfig): OpenIdTemplate {
  return {
    defaultIssuer: GOOGLE_ISSUER,
    defaultEndpoints: GOOGLE_ENDPOINTS,
    requiredScopes: ["openid"],
    revocation: true,
    // Google refresh tokens stay the same until revoked or expired (no rotation).
    rotatesRefreshTokens: false,
    offlineAccess: "by_template",
    authorizationParams: googleAuthorizationParams,
    canonicalScope: googleCanonicalScope,
    accountFromClaims: googleAccount,
    lookupAccount: (accessToken, lookups) => userinfoAccount(accessToken, lookups, googleAccount),
  };
}
