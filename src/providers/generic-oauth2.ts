/**
 * Any plain OAuth 2.0 server (kind `oauth2`): explicit endpoints only, no ID token. The account
 * comes from the configured userinfo endpoint (`sub`, else `id` or `user_id`); a server without
 * one identifies no account, so the integration is keyed by user and provider alone.
 */
import type { ProviderConfig } from "../config/types.js";
import type { ExternalAccount } from "../domain/types.js";
import type { JsonObject } from "./json-request.js";
import { attributes, claim, userinfoAccount, type OpenIdTemplate } from "./provider-template.js";

/** The account id used when the server offers no way to identify the account. */
export const UNIDENTIFIED_ACCOUNT_ID = "default";

export function oauth2Account(body: JsonObject): ExternalAccount | undefined {
  const id = idMember(body, "sub") ?? idMember(body, "id") ?? idMember(body, "user_id");
  if (id === undefined) return undefined;
  const email = claim(body, "email");
  const login = claim(body, "login") ?? claim(body, "username") ?? claim(body, "preferred_username");
  return { id, name: email ?? login ?? claim(body, "name") ?? id, attributes: attributes({ email, login }) };
}

export function oauth2Template(config: ProviderConfig): OpenIdTemplate {
  return {
    defaultIssuer: undefined,
    defaultEndpoints: {},
    requiredScopes: [],
    revocation: true,
    offlineAccess: "by_template",
    authorizationParams: () => ({}),
    lookupAccount: async (accessToken, lookups) => {
      if (config.endpoints.userinfo === undefined) {
        return { id: UNIDENTIFIED_ACCOUNT_ID, name: config.displayName, attributes: {} };
      }
      return userinfoAccount(accessToken, lookups, oauth2Account);
    },
  };
}

function idMember(body: JsonObject, key: string): string | undefined {
  const value = body[key];
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return typeof value === "string" && value !== "" ? value : undefined;
}
