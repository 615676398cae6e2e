/**
 * Microsoft identity platform v2 (OpenID Connect per tenant). Refresh tokens need the
 * `offline_access` scope and rotate on every use; there is no RFC 7009 revocation endpoint, so
 * revocation answers `not_supported` (deleting only forgets the tokens). The account is the
 * ID token's `oid` (needs the `profile` scope), with its `tid` as an attribute.
 */
import type { ProviderConfig } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import type { ExternalAccount } from "../domain/types.js";
import { stringField, type JsonObject } from "./json-request.js";
import { apiUrl, attributes, claim, consentPrompt, type OpenIdTemplate } from "./provider-template.js";

export const MICROSOFT_GRAPH_API = "https://graph.microsoft.com";

/** `tenant`: common, organizations, consumers or a tenant id (providers.md). */
export function microsoftIssuer(tenant: string | undefined): string {
  return `https://login.microsoftonline.com/${encodeURIComponent(tenant ?? "common")}/v2.0`;
}

const GRAPH_SCOPE_PREFIX = `${MICROSOFT_GRAPH_API}/`.toLowerCase();

/**
 * Microsoft's token response names the permissions of the token's resource, Graph's with their
 * resource prefix and in any case (`User.Read` asked, `https://graph.microsoft.com/user.read`
 * granted); scope names are case-insensitive there, and a bare name means Graph.
 */
export function microsoftCanonicalScope(scope: string): string {
  const lower = scope.toLowerCase();
  return lower.startsWith(GRAPH_SCOPE_PREFIX) ? lower.slice(GRAPH_SCOPE_PREFIX.length) : lower;
}

export function microsoftAccount(claims: JsonObject): ExternalAccount | undefined {
  const oid = claim(claims, "oid");
  if (oid === undefined) return undefined;
  const username = claim(claims, "preferred_username") ?? claim(claims, "email");
  return {
    id: oid,
    name: username ?? claim(claims, "name") ?? oid,
    attributes: attributes({ tid: claim(claims, "tid"), preferred_username: username }),
  };
}

export function microsoftTemplate(config: ProviderConfig): OpenIdTemplate {
  const meUrl = apiUrl(config.endpoints.api ?? MICROSOFT_GRAPH_API, "v1.0/me");
  return {
    defaultIssuer: microsoftIssuer(config.tenant),
    defaultEndpoints: {},
    requiredScopes: ["openid", "profile", "offline_access"],
    revocation: false,
    offlineAccess: "by_template",
    authorizationParams: consentPrompt,
    canonicalScope: microsoftCanonicalScope,
    accountFromClaims: microsoftAccount,
    // Graph `/v1.0/me` (needs `User.Read`): `id` is the same object id as the ID token's `oid`.
    lookupAccount: async (accessToken, lookups) => {
      const me = await lookups.getJson(meUrl, accessToken);
      const id = stringField(me, "id");
      if (id === undefined) {
        throw new BrokerError("provider_error", `provider "${config.id}" Graph /me answer has no id`, {
          reason: "ACCOUNT_UNKNOWN",
          metadata: { provider: config.id },
        });
      }
      const username = stringField(me, "userPrincipalName") ?? stringField(me, "mail");
      return { id, name: username ?? stringField(me, "displayName") ?? id, attributes: attributes({ preferred_username: username }) };
    },
  };
}
