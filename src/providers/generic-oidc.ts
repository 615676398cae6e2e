/**
 * Any OpenID Connect provider (kind `oidc`, and the sandbox): metadata from discovery of
 * `endpoints.issuer`, with explicitly configured endpoints taking precedence; the account is
 * the ID token's `sub`.
 */
import type { ProviderConfig } from "../config/types.js";
import type { ExternalAccount } from "../domain/types.js";
import type { JsonObject } from "./json-request.js";
import { attributes, claim, consentPrompt, userinfoAccount, type OpenIdTemplate } from "./provider-template.js";

export function oidcAccount(claims: JsonObject): ExternalAccount | undefined {
  const sub = claim(claims, "sub");
  if (sub === undefined) return undefined;
  const email = claim(claims, "email");
  const username = claim(claims, "preferred_username");
  return { id: sub, name: email ?? username ?? claim(claims, "name") ?? sub, attributes: attributes({ email, preferred_username: username }) };
}

export function oidcTemplate(_config: ProviderConfig): OpenIdTemplate {
  return {
    defaultIssuer: undefined,
    defaultEndpoints: {},
    requiredScopes: ["openid"],
    revocation: true,
    offlineAccess: "when_advertised",
    authorizationParams: consentPrompt,
    accountFromClaims: oidcAccount,
    lookupAccount: (accessToken, lookups) => userinfoAccount(accessToken, lookups, oidcAccount),
  };
}
