/**
 * What distinguishes one OpenID Connect / OAuth 2.0 provider template from another: where it
 * lives, which scopes and authorization parameters it needs, whether it revokes, and how the
 * external account is identified. `openid-provider-client.ts` does the protocol work for all.
 */
import type { ProviderConfig } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import type { AuthorizationRequestInput, Clock } from "../domain/ports.js";
import type { ExternalAccount } from "../domain/types.js";
import type { Logger } from "../observability/logger.js";
import type { JsonObject } from "./json-request.js";

export interface ProviderClientDeps {
  readonly logger: Logger;
  /** Replaces the global fetch (tests, proxies). */
  readonly fetch?: typeof fetch | undefined;
  readonly clock?: Clock | undefined;
}

/** Endpoints a template knows without discovery. */
export interface TemplateEndpoints {
  readonly authorization?: string | undefined;
  readonly token?: string | undefined;
  readonly revocation?: string | undefined;
  readonly userinfo?: string | undefined;
}

/** Calls a template may make to identify the account behind an access token. */
export interface AccountLookups {
  /** GET a JSON resource with the access token as Bearer; failures are mapped `BrokerError`s. */
  getJson(url: string, accessToken: string, headers?: Readonly<Record<string, string>>): Promise<JsonObject>;
  /** The userinfo endpoint (configured or discovered), or `undefined` when there is none. */
  userinfoEndpoint(): Promise<string | undefined>;
}

export interface OpenIdTemplate {
  /** Issuer for discovery when `endpoints.issuer` is not configured; `undefined`: explicit endpoints only. */
  readonly defaultIssuer: string | undefined;
  /** Used only with the default issuer: an overridden issuer is discovered, not mixed with these. */
  readonly defaultEndpoints: TemplateEndpoints;
  /** Scopes the protocol needs whatever the caller asked (`openid`, Microsoft's `offline_access`). */
  readonly requiredScopes: readonly string[];
  /** False: revocation answers `not_supported` unless an endpoint is configured explicitly. */
  readonly revocation: boolean;
  /** `ProviderClient.rotatesRefreshTokens`: false when the provider documents it never rotates them. */
  readonly rotatesRefreshTokens?: boolean;
  /**
   * How the template gets a refresh token. `"when_advertised"`: asks for `offline_access`, with
   * `prompt=consent` (OIDC Core §11), whenever the provider lists it in `scopes_supported`.
   * `"by_template"`: its own parameters or required scopes decide (Google's
   * `access_type=offline`, Microsoft's `offline_access` that needs no consent prompt).
   */
  readonly offlineAccess: "when_advertised" | "by_template";
  authorizationParams(input: AuthorizationRequestInput): Record<string, string>;
  /** `ProviderClient.canonicalScope`: the provider's own spelling of scopes in token responses. */
  canonicalScope?(scope: string): string;
  /** The account from validated ID token claims, when the template identifies accounts that way. */
  accountFromClaims?(claims: JsonObject): ExternalAccount | undefined;
  /** The account behind an access token (channels, Graph /me, userinfo); also `fetchAccount`. */
  lookupAccount?(accessToken: string, lookups: AccountLookups): Promise<ExternalAccount>;
}

export type TemplateFactory = (config: ProviderConfig) => OpenIdTemplate;

/** Adds the protocol's required scopes to what the caller asked, keeping the caller's order. */
export function withRequiredScopes(scopes: readonly string[], required: readonly string[]): string[] {
  const result = [...new Set(scopes)];
  for (const scope of required) if (!result.includes(scope)) result.push(scope);
  return result;
}

export const OFFLINE_ACCESS = "offline_access";

/**
 * The scopes a `"when_advertised"` template always asks for, given the provider's metadata:
 * without `offline_access` most OpenID providers issue no refresh token, and the integration
 * silently stops working at the first expiry.
 */
export function offlineAccessScopes(template: Pick<OpenIdTemplate, "offlineAccess">, scopesSupported: readonly string[] | undefined): string[] {
  return template.offlineAccess === "when_advertised" && scopesSupported?.includes(OFFLINE_ACCESS) === true ? [OFFLINE_ACCESS] : [];
}

/**
 * `prompt=consent` when a `"when_advertised"` template asks for `offline_access` (OIDC Core
 * §11: offline access needs consent; oidc-provider drops the scope without it).
 */
export function offlineAccessPrompt(template: Pick<OpenIdTemplate, "offlineAccess">, scopes: readonly string[]): Record<string, string> {
  return template.offlineAccess === "when_advertised" && scopes.includes(OFFLINE_ACCESS) ? { prompt: "consent" } : {};
}

/** A string claim, or `undefined`. */
export function claim(claims: JsonObject | undefined, name: string): string | undefined {
  const value = claims?.[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** Attributes without the undefined entries. */
export function attributes(entries: Record<string, string | undefined>): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(entries)) if (value !== undefined) result[key] = value;
  return result;
}

/** `prompt=consent` when the caller needs a fresh consent (to get a refresh token again). */
export function consentPrompt(input: Pick<AuthorizationRequestInput, "forceConsent">): Record<string, string> {
  return input.forceConsent === true ? { prompt: "consent" } : {};
}

/** Reads the userinfo endpoint (OIDC Core §5.3) and identifies the account with `toAccount`. */
export async function userinfoAccount(
  accessToken: string,
  lookups: AccountLookups,
  toAccount: (claims: JsonObject) => ExternalAccount | undefined,
): Promise<ExternalAccount> {
  const endpoint = await lookups.userinfoEndpoint();
  if (endpoint === undefined) {
    throw new BrokerError("provider_misconfigured", "the provider has no userinfo endpoint to identify the account with", {
      reason: "USERINFO_ENDPOINT_MISSING",
    });
  }
  const account = toAccount(await lookups.getJson(endpoint, accessToken));
  if (account === undefined) {
    throw new BrokerError("provider_error", "the provider's userinfo answer does not identify the account", {
      reason: "ACCOUNT_UNKNOWN",
    });
  }
  return account;
}

/** `path` under an API base URL that may or may not end with a slash (and may have a path). */
export function apiUrl(base: string, path: string): string {
  return new URL(path.replace(/^\//, ""), base.endsWith("/") ? base : `${base}/`).toString();
}
