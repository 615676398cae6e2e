/**
 * YouTube: Google's authorization server and YouTube scopes; the account is the channel, read
 * from `youtube/v3/channels?mine=true` (providers.md). The YouTube Data API reports an exhausted
 * quota as 403 `quotaExceeded`, mapped to `provider_rate_limited` in provider-errors.ts.
 */
import type { ProviderConfig } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import type { ExternalAccount } from "../domain/types.js";
import { GOOGLE_ENDPOINTS, GOOGLE_ISSUER, googleAuthorizationParams, googleCanonicalScope } from "./google.js";
import { objectField, stringField, type JsonObject } from "./json-request.js";
import { apiUrl, attributes, type AccountLookups, type OpenIdTemplate } from "./provider-template.js";

export const YOUTUBE_API = "https://www.googleapis.com";

export const YOUTUBE_SCOPES = [
  "https://www.googleapis.com/auth/youtube",
  "https://www.googleapis.com/auth/youtube.readonly",
  "https://www.googleapis.com/auth/youtube.upload",
  "https://www.googleapis.com/auth/youtube.force-ssl",
] as const;

export function youtubeTemplate(config: ProviderConfig): OpenIdTemplate {
  const channelsUrl = apiUrl(config.endpoints.api ?? YOUTUBE_API, "youtube/v3/channels?mine=true&part=id,snippet");
  return {
    defaultIssuer: GOOGLE_ISSUER,
    defaultEndpoints: GOOGLE_ENDPOINTS,
    // The channel identifies the account, so `openid` is not needed.
    requiredScopes: [],
    revocation: true,
    // Google's token endpoint: refresh tokens are not rotated.
    rotatesRefreshTokens: false,
    offlineAccess: "by_template",
    authorizationParams: googleAuthorizationParams,
    canonicalScope: googleCanonicalScope,
    lookupAccount: (accessToken, lookups) => channelAccount(config.id, channelsUrl, accessToken, lookups),
  };
}

async function channelAccount(
  provider: string,
  channelsUrl: string,
  accessToken: string,
  lookups: AccountLookups,
): Promise<ExternalAccount> {
  const body = await lookups.getJson(channelsUrl, accessToken);
  const items = Array.isArray(body["items"]) ? (body["items"] as unknown[]) : [];
  const channel = items[0];
  const id = isObject(channel) ? stringField(channel, "id") : undefined;
  if (!isObject(channel) || id === undefined) {
    throw new BrokerError(
      "provider_error",
      `the Google account connected at provider "${provider}" has no YouTube channel; create one, then connect again`,
      { reason: "YOUTUBE_CHANNEL_MISSING", metadata: { provider } },
    );
  }
  const snippet = objectField(channel, "snippet");
  return {
    id,
    name: stringField(snippet, "title") ?? id,
    attributes: attributes({ custom_url: stringField(snippet, "customUrl") }),
  };
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
