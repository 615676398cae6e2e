/**
 * Notion: plain OAuth 2.0 with a JSON token endpoint, the `Notion-Version` header and HTTP
 * Basic with the raw client id and secret (providers.md). No PKCE is documented, so `state` is
 * the CSRF defence; no `expires_in` is sent, so the configured default lifetime applies; refresh
 * tokens rotate on every use. The account is the bot (`bot_id`) the token response names.
 */
import { calculatePKCECodeChallenge } from "openid-client";
import type { ProviderConfig } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import { systemClock, type ProviderClient, type ProviderGrant } from "../domain/ports.js";
import type { ExternalAccount } from "../domain/types.js";
import { readAuthorizationResponse } from "./authorization-response.js";
import { basicAuthorization, bodyCredentials, clientCredentials } from "./client-auth.js";
import { objectField, requestJson, stringField, type JsonObject } from "./json-request.js";
import { revocationOutcome, toProviderError, type ProviderOperation } from "./provider-errors.js";
import { createProviderHttp } from "./provider-http.js";
import { apiUrl, attributes, type ProviderClientDeps } from "./provider-template.js";
import { toTokenSet } from "./token-response.js";

export const NOTION_API = "https://api.notion.com";
/** The API version the broker speaks; Notion requires the header on every call. */
export const NOTION_VERSION = "2022-06-28";

/** The account from a token response: `bot_id`, its workspace and the user who installed it. */
export function notionAccount(response: JsonObject): ExternalAccount | undefined {
  const botId = stringField(response, "bot_id");
  if (botId === undefined) return undefined;
  const workspaceName = stringField(response, "workspace_name");
  const owner = objectField(response, "owner");
  return {
    id: botId,
    name: workspaceName ?? botId,
    attributes: attributes({
      workspace_id: stringField(response, "workspace_id"),
      workspace_name: workspaceName,
      owner_user_id: stringField(objectField(owner, "user"), "id"),
    }),
  };
}

export function createNotionProviderClient(config: ProviderConfig, deps: ProviderClientDeps): ProviderClient {
  const credentials = clientCredentials(config);
  const clock = deps.clock ?? systemClock;
  const http = createProviderHttp({
    providerId: config.id,
    timeoutMs: config.timeoutMs,
    maxConcurrency: config.maxConcurrency,
    fetch: deps.fetch,
  });
  const api = config.endpoints.api ?? NOTION_API;
  const endpoints = {
    authorization: config.endpoints.authorization ?? apiUrl(api, "v1/oauth/authorize"),
    token: config.endpoints.token ?? apiUrl(api, "v1/oauth/token"),
    revocation: config.endpoints.revocation ?? apiUrl(api, "v1/oauth/revoke"),
    me: apiUrl(api, "v1/users/me"),
  };

  function clientCall(
    url: string,
    body: Record<string, string>,
    operation: ProviderOperation,
    signal?: AbortSignal,
  ): Promise<JsonObject> {
    const headers: Record<string, string> = { "notion-version": NOTION_VERSION };
    const authorization = basicAuthorization(credentials);
    if (authorization !== undefined) headers["authorization"] = authorization;
    return requestJson(
      http,
      { method: "POST", url, headers, json: { ...body, ...bodyCredentials(credentials) }, signal },
      { provider: config.id, operation, clock },
    );
  }

  function grant(response: JsonObject, scopesWhenOmitted: readonly string[], previousRefreshToken?: string): ProviderGrant {
    const tokens = toTokenSet(response, {
      provider: config.id,
      now: clock.now(),
      defaultLifetimeSeconds: config.defaultAccessTokenLifetimeSeconds,
      scopesWhenOmitted,
      previousRefreshToken,
    });
    return { tokens, account: notionAccount(response) };
  }

  return {
    id: config.id,

    async authorizationUrl(input) {
      const url = new URL(endpoints.authorization);
      const params: Record<string, string> = {
        owner: "user",
        ...config.authorizationParams,
        client_id: credentials.clientId,
        response_type: "code",
        redirect_uri: input.redirectUri,
        state: input.state,
      };
      if (input.scopes.length > 0) params["scope"] = input.scopes.join(" ");
      if (config.pkce && input.codeVerifier !== undefined) {
        params["code_challenge"] = await calculatePKCECodeChallenge(input.codeVerifier);
        params["code_challenge_method"] = "S256";
      }
      for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
      return url;
    },

    async exchangeCode(input) {
      const code = readAuthorizationResponse(input.callbackUrl, {
        provider: config.id,
        state: input.expectedState,
        issuer: config.endpoints.issuer,
      });
      const body: Record<string, string> = { grant_type: "authorization_code", code, redirect_uri: input.redirectUri };
      if (config.pkce && input.codeVerifier !== undefined) body["code_verifier"] = input.codeVerifier;
      const result = grant(await clientCall(endpoints.token, body, "code_exchange", input.signal), input.requestedScopes);
      if (result.account === undefined) {
        throw new BrokerError("provider_error", `provider "${config.id}" token response names no bot_id`, {
          reason: "ACCOUNT_UNKNOWN",
          metadata: { provider: config.id },
        });
      }
      return result;
    },

    async refresh(refreshToken, options) {
      const body = { grant_type: "refresh_token", refresh_token: refreshToken };
      return grant(await clientCall(endpoints.token, body, "refresh", options?.signal), [], refreshToken);
    },

    async revoke(token) {
      try {
        await clientCall(endpoints.revocation, { token }, "revocation");
        return { outcome: "revoked" };
      } catch (error) {
        return revocationOutcome(toProviderError(error, { provider: config.id, operation: "revocation", now: clock.now() }));
      }
    },

    /** `GET /v1/users/me` with the bot's token names the bot and its owner. */
    async fetchAccount(accessToken) {
      const me = await requestJson(
        http,
        {
          method: "GET",
          url: endpoints.me,
          headers: { authorization: `Bearer ${accessToken}`, "notion-version": NOTION_VERSION },
        },
        { provider: config.id, operation: "account", clock },
      );
      const id = stringField(me, "id");
      if (id === undefined) {
        throw new BrokerError("provider_error", `provider "${config.id}" users/me answer has no id`, {
          reason: "ACCOUNT_UNKNOWN",
          metadata: { provider: config.id },
        });
      }
      const bot = objectField(me, "bot");
      const workspaceName = stringField(bot, "workspace_name");
      return {
        id,
        name: workspaceName ?? stringField(me, "name") ?? id,
        attributes: attributes({
          workspace_id: stringField(bot, "workspace_id"),
          workspace_name: workspaceName,
          owner_user_id: stringField(objectField(objectField(bot, "owner"), "user"), "id"),
        }),
      };
    },
  };
}
