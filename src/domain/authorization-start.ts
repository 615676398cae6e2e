/**
 * StartAuthorization: a one-time, expiring session and the provider's authorization URL. The
 * session keeps the PKCE verifier encrypted and only a hash of the state (with the browser
 * binding, for a signed-in user's browser), so a database reader cannot complete the flow.
 */
import { randomUUID } from "node:crypto";
import type { FlowContext } from "./authorization-context.js";
import { flowCookieName, randomToken, stateHash } from "./authorization-state.js";
import type { StartAuthorizationInput, StartAuthorizationResult } from "./authorization-types.js";
import { requestedScopes } from "./scope-spelling.js";
import { auditCaller } from "./ports.js";
import type { ProviderProfile } from "./provider-profile.js";
import { parseReturnToAllowList, resolveReturnTo } from "./return-to.js";
import type { RequestContext } from "./types.js";

/** RFC 9700 §4.7 and oauth-client-security.md §1: a state outlives its consent page by little. */
export const MAX_SESSION_TTL_SECONDS = 600;

export function createStartAuthorization(
  flow: FlowContext,
): (ctx: RequestContext, input: StartAuthorizationInput) => Promise<StartAuthorizationResult> {
  async function needsConsentForRefreshToken(profile: ProviderProfile, userId: string): Promise<boolean> {
    if (!profile.refreshTokenOnlyWithConsent) return false;
    const existing = await flow.deps.integrations.findForUser(userId, profile.id);
    return !existing.some((integration) => integration.status === "active" && integration.hasRefreshToken);
  }

  async function start(ctx: RequestContext, input: StartAuthorizationInput): Promise<StartAuthorizationResult> {
    const profile = flow.provider(input.provider);
    const client = flow.usableClient(profile);
    const policy = flow.deps.policy();
    policy.assertProviderAllowed(ctx.principal, profile.id);
    const userId = policy.resolveUser(ctx.principal, input.userId, "start_authorization");
    const settings = flow.deps.settings();
    const scopes = requestedScopes(profile, client, input.scopes);
    const returnTo = resolveReturnTo(input.returnTo, parseReturnToAllowList(settings.returnToAllowList));
    flow.deps.limitStart?.(userId);

    const ttlSeconds = Math.max(1, Math.min(Math.floor(settings.sessionTtlSeconds), MAX_SESSION_TTL_SECONDS));
    const now = flow.clock.now();
    const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
    const sessionId = randomUUID();
    const state = randomToken();
    const codeVerifier = profile.pkce ? randomToken() : undefined;
    const nonce = profile.oidc ? randomToken() : undefined;
    const redirectUri = flow.deps.providers.redirectUri(profile.id);
    const binding = ctx.principal.kind === "user" ? randomToken() : undefined;

    const authorizationUrl = await client.authorizationUrl({
      state,
      scopes,
      redirectUri,
      codeVerifier,
      nonce,
      forceConsent: await needsConsentForRefreshToken(profile, userId),
    });
    // What the provider is really asked for: the client adds the protocol's scopes (`openid`,
    // `offline_access` where advertised), and the grant is checked against those.
    const askedScopes = requestedOnTheWire(scopes, authorizationUrl);
    const codeVerifierCiphertext =
      codeVerifier === undefined ? null : await flow.deps.cipher.encrypt({ plaintext: codeVerifier, context: sessionId });
    await flow.deps.sessions.create({
      id: sessionId,
      stateHash: stateHash(state, binding),
      userId,
      provider: profile.id,
      requestedScopes: askedScopes,
      returnTo,
      codeVerifierCiphertext,
      nonce: nonce ?? null,
      createdAt: now,
      expiresAt,
    });
    await flow.record({
      action: "authorization.started",
      outcome: "success",
      ...auditCaller(ctx),
      userId,
      provider: profile.id,
      scopes: askedScopes,
      details: { session_id: sessionId, browser_bound: String(binding !== undefined) },
    });
    return {
      authorizationUrl: authorizationUrl.href,
      expiresAt,
      sessionId,
      browserBinding:
        binding === undefined
          ? undefined
          : {
              cookieName: flowCookieName(profile.id),
              value: binding,
              path: new URL(redirectUri).pathname,
              maxAgeSeconds: ttlSeconds,
              secure: flow.deps.publicUrl.protocol === "https:",
            },
    };
  }

  return start;
}

/**
 * The scopes the session asked the provider for: the caller's, plus those the provider client
 * added to the authorization URL (`openid`, Microsoft's `offline_access`...), which the grant
 * may carry without widening anything.
 */
function requestedOnTheWire(scopes: readonly string[], authorizationUrl: URL): string[] {
  const onTheWire = (authorizationUrl.searchParams.get("scope") ?? "").split(" ").filter((scope) => scope !== "");
  return [...new Set([...scopes, ...onTheWire])];
}
