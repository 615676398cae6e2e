/**
 * The `ProviderClient` for every OpenID Connect / OAuth 2.0 template, on openid-client v6:
 * lazy discovery (start-up never waits for a provider), PKCE S256, state / nonce / `iss`
 * checks, the code and refresh grants, and RFC 7009 revocation. Each call is bounded by the
 * provider's timeout and concurrency (provider-http.ts) and fails with a `BrokerError`.
 */
import {
  Configuration,
  allowInsecureRequests,
  authorizationCodeGrant,
  buildAuthorizationUrl,
  calculatePKCECodeChallenge,
  customFetch,
  discovery,
  refreshTokenGrant,
  tokenRevocation,
  type AuthorizationCodeGrantChecks,
  type CustomFetch,
  type ServerMetadata,
} from "openid-client";
import type { ProviderConfig } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import {
  systemClock,
  type AuthorizationRequestInput,
  type CodeExchangeInput,
  type ProviderClient,
  type ProviderGrant,
  type RevocationResult,
} from "../domain/ports.js";
import type { ExternalAccount } from "../domain/types.js";
import { readAuthorizationResponse } from "./authorization-response.js";
import { clientCredentials, openIdClientAuth } from "./client-auth.js";
import { requestJson, type JsonObject } from "./json-request.js";
import { revocationOutcome, toProviderError, type ProviderOperation } from "./provider-errors.js";
import { createProviderHttp } from "./provider-http.js";
import {
  offlineAccessPrompt,
  offlineAccessScopes,
  withRequiredScopes,
  type AccountLookups,
  type OpenIdTemplate,
  type ProviderClientDeps,
} from "./provider-template.js";
import { toTokenSet } from "./token-response.js";

export interface OpenIdClientOptions {
  /** Discover metadata from the issuer (OIDC); false: explicit endpoints only (plain OAuth 2.0). */
  readonly discovery: boolean;
  /** Non-loopback hosts reachable over plain HTTP (the sandbox's own public host). */
  readonly insecureHosts?: readonly string[] | undefined;
}

interface Resolved {
  readonly configuration: Configuration;
  readonly metadata: ServerMetadata;
  /** Known issuer identifier; `undefined` for OAuth 2.0 servers configured without one. */
  readonly issuer: string | undefined;
}

export function createOpenIdProviderClient(
  config: ProviderConfig,
  template: OpenIdTemplate,
  deps: ProviderClientDeps,
  options: OpenIdClientOptions,
): ProviderClient {
  const credentials = clientCredentials(config);
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger.child({ provider: config.id });
  const http = createProviderHttp({
    providerId: config.id,
    timeoutMs: config.timeoutMs,
    maxConcurrency: config.maxConcurrency,
    fetch: deps.fetch,
    insecureHosts: options.insecureHosts,
  });
  const boundedFetch: CustomFetch = (url, init) => http.fetch(url, init);
  const clientAuth = openIdClientAuth(credentials);
  // openid-client's own timeout is in whole seconds; ours (provider-http.ts) fires first.
  const libraryTimeoutSeconds = Math.ceil(config.timeoutMs / 1000) + 1;
  let resolving: Promise<Resolved> | undefined;

  const fail = (error: unknown, operation: ProviderOperation): BrokerError =>
    toProviderError(error, { provider: config.id, operation, now: clock.now() });

  function resolve(): Promise<Resolved> {
    resolving ??= build().then(
      (resolved) => {
        logger.debug({ issuer: resolved.issuer }, "provider metadata resolved");
        return resolved;
      },
      (error: unknown) => {
        resolving = undefined; // the next call tries again
        const mapped = fail(error, "discovery");
        logger.warn({ err: mapped }, "provider metadata could not be resolved");
        throw mapped;
      },
    );
    return resolving;
  }

  async function build(): Promise<Resolved> {
    const configuredIssuer = config.endpoints.issuer;
    const issuer = configuredIssuer ?? template.defaultIssuer;
    const overrides = endpointOverrides(config, configuredIssuer === undefined ? template : undefined);
    let configuration: Configuration;
    if (options.discovery && issuer !== undefined) {
      configuration = await discovery(new URL(issuer), credentials.clientId, undefined, clientAuth, {
        [customFetch]: boundedFetch,
        execute: [allowInsecureRequests],
        timeout: libraryTimeoutSeconds,
      });
      if (Object.keys(overrides).length > 0) {
        configuration = bounded(new Configuration({ ...plainMetadata(configuration), ...overrides }, credentials.clientId, undefined, clientAuth));
      }
      return { configuration, metadata: configuration.serverMetadata(), issuer: configuration.serverMetadata().issuer };
    }
    if (overrides.authorization_endpoint === undefined || overrides.token_endpoint === undefined) {
      throw new BrokerError(
        "provider_misconfigured",
        `provider "${config.id}" needs endpoints.issuer (discovery) or both endpoints.authorization and endpoints.token`,
        { reason: "ENDPOINTS_MISSING", metadata: { provider: config.id } },
      );
    }
    // Without an issuer identifier there is nothing to compare `iss` with; the token endpoint's
    // origin stands in for openid-client's required `issuer`, and the callback's `iss` is
    // dropped before the exchange (see exchange).
    const metadata: ServerMetadata = { issuer: issuer ?? new URL(overrides.token_endpoint).origin, ...overrides };
    configuration = bounded(new Configuration(metadata, credentials.clientId, undefined, clientAuth));
    return { configuration, metadata, issuer };
  }

  function bounded(configuration: Configuration): Configuration {
    configuration[customFetch] = boundedFetch;
    configuration.timeout = libraryTimeoutSeconds;
    // HTTPS is enforced by provider-http.ts, which allows plain HTTP for loopback hosts only.
    allowInsecureRequests(configuration);
    return configuration;
  }

  function lookups(signal?: AbortSignal): AccountLookups {
    return {
      getJson: (url, accessToken, headers) =>
        requestJson(
          http,
          { method: "GET", url, headers: { ...headers, authorization: `Bearer ${accessToken}` }, signal },
          { provider: config.id, operation: "account", clock },
        ),
      userinfoEndpoint: async () => config.endpoints.userinfo ?? (await resolve()).metadata.userinfo_endpoint,
    };
  }

  async function identify(accessToken: string, claims: JsonObject | undefined, signal?: AbortSignal): Promise<ExternalAccount> {
    const fromClaims = claims === undefined ? undefined : template.accountFromClaims?.(claims);
    if (fromClaims !== undefined) return fromClaims;
    if (template.lookupAccount !== undefined) return template.lookupAccount(accessToken, lookups(signal));
    throw new BrokerError("provider_error", `provider "${config.id}" did not identify the account (no ID token, no account lookup)`, {
      reason: "ACCOUNT_UNKNOWN",
      metadata: { provider: config.id },
    });
  }

  const client: ProviderClient = {
    id: config.id,

    async authorizationUrl(input: AuthorizationRequestInput): Promise<URL> {
      const { configuration, metadata } = await resolve();
      const scopes = withRequiredScopes(input.scopes, [...template.requiredScopes, ...offlineAccessScopes(template, metadata.scopes_supported)]);
      // Template and configured extras first: the security parameters below always win.
      const params: Record<string, string> = {
        ...template.authorizationParams(input),
        ...offlineAccessPrompt(template, scopes),
        ...config.authorizationParams,
        response_type: "code",
        redirect_uri: input.redirectUri,
        state: input.state,
      };
      if (scopes.length > 0) params["scope"] = scopes.join(" ");
      if (config.pkce) {
        if (input.codeVerifier === undefined) {
          throw new BrokerError("internal", `provider "${config.id}" requires PKCE but no code verifier was given`);
        }
        // RFC 7636 §4.2: S256 only; "plain" would expose the verifier in the browser.
        params["code_challenge"] = await calculatePKCECodeChallenge(input.codeVerifier);
        params["code_challenge_method"] = "S256";
      }
      if (input.nonce !== undefined && scopes.includes("openid")) params["nonce"] = input.nonce;
      try {
        return buildAuthorizationUrl(configuration, params);
      } catch (error) {
        throw fail(error, "authorization");
      }
    },

    async exchangeCode(input: CodeExchangeInput): Promise<ProviderGrant> {
      const resolved = await resolve();
      readAuthorizationResponse(input.callbackUrl, {
        provider: config.id,
        state: input.expectedState,
        issuer: resolved.issuer,
        issuerRequired: resolved.issuer !== undefined && resolved.metadata.authorization_response_iss_parameter_supported === true,
      });
      // The token request's redirect_uri must be the exact registered value (RFC 6749 §4.1.3):
      // openid-client derives it from this URL, so rebuild it from the redirect URI.
      const currentUrl = new URL(input.redirectUri);
      for (const [key, value] of input.callbackUrl.searchParams) {
        if (key === "iss" && resolved.issuer === undefined) continue;
        currentUrl.searchParams.append(key, value);
      }
      const scopes = withRequiredScopes(input.requestedScopes, template.requiredScopes);
      const checks: AuthorizationCodeGrantChecks = { expectedState: input.expectedState };
      if (input.codeVerifier !== undefined) checks.pkceCodeVerifier = input.codeVerifier;
      if (scopes.includes("openid")) {
        checks.idTokenExpected = true;
        if (input.nonce !== undefined) checks.expectedNonce = input.nonce;
      }
      try {
        const response = await http.withSignal(input.signal, () =>
          authorizationCodeGrant(resolved.configuration, currentUrl, checks),
        );
        const tokens = toTokenSet(response, {
          provider: config.id,
          now: clock.now(),
          defaultLifetimeSeconds: config.defaultAccessTokenLifetimeSeconds,
          scopesWhenOmitted: scopes,
        });
        const account = await identify(tokens.accessToken, response.claims(), input.signal);
        return { tokens, account };
      } catch (error) {
        throw fail(error, "code_exchange");
      }
    },

    async refresh(refreshToken, refreshOptions): Promise<ProviderGrant> {
      const { configuration } = await resolve();
      try {
        const response = await http.withSignal(refreshOptions?.signal, () => refreshTokenGrant(configuration, refreshToken));
        const tokens = toTokenSet(response, {
          provider: config.id,
          now: clock.now(),
          defaultLifetimeSeconds: config.defaultAccessTokenLifetimeSeconds,
          scopesWhenOmitted: [],
          previousRefreshToken: refreshToken,
        });
        const claims = response.claims();
        const account = claims === undefined ? undefined : template.accountFromClaims?.(claims);
        return { tokens, account };
      } catch (error) {
        throw fail(error, "refresh");
      }
    },

    async revoke(token, hint): Promise<RevocationResult> {
      if (!template.revocation && config.endpoints.revocation === undefined) return { outcome: "not_supported" };
      try {
        const { configuration, metadata } = await resolve();
        if (metadata.revocation_endpoint === undefined) return { outcome: "not_supported" };
        // RFC 7009 §2.2: 200 also for tokens the server does not know.
        await tokenRevocation(configuration, token, { token_type_hint: hint });
        return { outcome: "revoked" };
      } catch (error) {
        return revocationOutcome(fail(error, "revocation"));
      }
    },
  };
  const canonicalScope = template.canonicalScope;
  const withRotation: ProviderClient = template.rotatesRefreshTokens === undefined ? client : { ...client, rotatesRefreshTokens: template.rotatesRefreshTokens };
  const withScopes: ProviderClient = canonicalScope === undefined ? withRotation : { ...withRotation, canonicalScope };
  if (template.lookupAccount !== undefined) {
    const lookupAccount = template.lookupAccount;
    return { ...withScopes, fetchAccount: (accessToken) => lookupAccount(accessToken, lookups()) };
  }
  return withScopes;
}

type EndpointMetadata = Pick<ServerMetadata, "authorization_endpoint" | "token_endpoint" | "revocation_endpoint" | "userinfo_endpoint">;

/** Explicitly configured endpoints, over the template's defaults (only with its default issuer). */
function endpointOverrides(config: ProviderConfig, template: OpenIdTemplate | undefined): EndpointMetadata {
  const defaults = template?.defaultEndpoints ?? {};
  const pick = (key: "authorization" | "token" | "revocation" | "userinfo"): string | undefined =>
    config.endpoints[key] ?? defaults[key];
  const result: Record<string, string> = {};
  const entries: Array<[keyof EndpointMetadata, string | undefined]> = [
    ["authorization_endpoint", pick("authorization")],
    ["token_endpoint", pick("token")],
    ["revocation_endpoint", pick("revocation")],
    ["userinfo_endpoint", pick("userinfo")],
  ];
  for (const [key, value] of entries) if (value !== undefined) result[key] = value;
  return result;
}

/** Discovered metadata without openid-client's helper functions (it structured-clones metadata). */
function plainMetadata(configuration: Configuration): ServerMetadata {
  const entries = Object.entries(configuration.serverMetadata()).filter(([, value]) => typeof value !== "function");
  return Object.fromEntries(entries) as unknown as ServerMetadata;
}
