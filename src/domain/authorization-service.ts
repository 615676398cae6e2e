/**
 * The authorization-code flow that connects a user's third-party account (RFC 6749 §4.1 with
 * PKCE, RFC 7636; checks from RFC 9700 and oauth-client-security.md): StartAuthorization creates
 * a one-time, expiring session and returns the provider's authorization URL; the provider's
 * redirect comes back to `GET /oauth/callback/<provider>` (or, for apps that receive it
 * themselves, to CompleteAuthorization); the code is exchanged, the account identified, and the
 * integration created or updated with its token set encrypted.
 *
 * Browser binding (RFC 9700 §4.7, CSRF and session fixation): when a signed-in user's browser
 * starts the flow, the broker also sets a random binding value as an HttpOnly, SameSite=Lax
 * cookie scoped to the provider's callback path, and stores `sha256(state + "." + binding)` as
 * the session's state hash. The callback hashes the state with the cookie it receives, so a
 * state replayed into another browser (an attacker's link, a leaked URL) finds no session.
 * Flows a service starts for a user have no browser of their own: their hash is `sha256(state)`,
 * and the callback falls back to it when no bound session matches. Neither the state nor the
 * binding is stored, so a database reader cannot complete anyone's flow.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { ProviderConfig, ProviderKind } from "../config/types.js";
import type {
  AuthorizationIntegrationStore,
  AuthorizationSessionStore,
  ProviderDirectory,
} from "./authorization-ports.js";
import { BrokerError, invalidArgument, isBrokerError } from "./errors.js";
import { refuseWidenedGrant, widenedGrantAuditDetails } from "./granted-scopes.js";
import type { Policy } from "./policy.js";
import { requestedScopes } from "./scope-spelling.js";
import { auditCaller, systemClock, type AuditEventInput, type AuditLog, type Cipher, type Clock, type ProviderClient, type ProviderGrant } from "./ports.js";
import { parseReturnToAllowList, resolveReturnTo, withOutcome } from "./return-to.js";
import type { AuthorizationSession, ExternalAccount, Integration, Principal, RequestContext, TokenSet } from "./types.js";

/** RFC 9700 §4.7 and oauth-client-security.md §1: a state outlives its consent page by little. */
export const MAX_SESSION_TTL_SECONDS = 600;
export const DEFAULT_EXCHANGE_TIMEOUT_MS = 10_000;
const RANDOM_BYTES = 32;
const MAX_STATE_LENGTH = 512;
/** Kinds that issue a refresh token only at first consent unless `prompt=consent` (providers.md). */
const CONSENT_FOR_REFRESH_TOKEN: ReadonlySet<ProviderKind> = new Set(["google", "youtube"]);
/** Kinds that speak OpenID Connect, where a nonce binds the ID token to this request. */
const OIDC_KINDS: ReadonlySet<ProviderKind> = new Set(["google", "youtube", "microsoft", "oidc", "sandbox"]);

export interface AuthorizationSettings {
  /** Allowed `return_to` prefixes (origin + path prefix); the first is the default. */
  readonly returnToAllowList: readonly string[];
  readonly sessionTtlSeconds: number;
}

export interface AuthorizationServiceDeps {
  readonly providers: ProviderDirectory;
  /** The live policy (a getter, so a reload applies to the next call). */
  readonly policy: () => Pick<Policy, "resolveUser" | "assertProviderAllowed">;
  readonly sessions: AuthorizationSessionStore;
  readonly integrations: AuthorizationIntegrationStore;
  readonly cipher: Pick<Cipher, "encrypt" | "decrypt" | "encryptBatch">;
  readonly audit: AuditLog;
  readonly settings: () => AuthorizationSettings;
  /** The broker's external base URL: https makes the binding cookie `Secure`. */
  readonly publicUrl: URL;
  readonly clock?: Clock | undefined;
  /** Throws `rate_limited` when the user started too many authorizations (per user, not per caller). */
  readonly limitStart?: ((userId: string) => void) | undefined;
  /** Told after a reconnect replaced an integration's tokens (token cache invalidation). */
  readonly onIntegrationChanged?: ((integrationId: string) => void) | undefined;
  /** Upper bound for the whole code exchange (token endpoint and account lookup). */
  readonly exchangeTimeoutMs?: number | undefined;
  readonly logger?: { warn(obj: object, msg: string): void } | undefined;
}

export interface StartAuthorizationInput {
  readonly provider: string;
  readonly scopes: readonly string[];
  readonly returnTo: string;
  readonly userId: string;
}

/** The binding cookie to send with the StartAuthorization response (browser callers only). */
export interface BrowserBinding {
  readonly cookieName: string;
  readonly value: string;
  /** The provider's callback path: the browser sends the cookie there and nowhere else. */
  readonly path: string;
  readonly maxAgeSeconds: number;
  readonly secure: boolean;
}

export interface StartAuthorizationResult {
  readonly authorizationUrl: string;
  readonly expiresAt: Date;
  readonly sessionId: string;
  readonly browserBinding: BrowserBinding | undefined;
}

export interface CallbackInput {
  /** The provider named by the callback path. */
  readonly provider: string;
  /** The query the provider redirected the browser back with. */
  readonly query: URLSearchParams;
  /** The value of the provider's binding cookie, when the browser sent one. */
  readonly binding: string | undefined;
  readonly requestId: string;
  readonly peer: string;
}

/**
 * `consumedBinding`: the session found was the one the browser's binding cookie belongs to, so
 * the cookie has served its flow. A callback that found no session, or a service-started
 * (unbound) one, must leave the cookie alone: it may belong to a flow still in progress.
 */
export type CallbackOutcome =
  | { readonly kind: "connected"; readonly integration: Integration; readonly location: string; readonly consumedBinding: boolean }
  /** The flow failed after its session was found: back to the app with `error=<code>`. */
  | { readonly kind: "failed"; readonly error: BrokerError; readonly code: string; readonly location: string; readonly consumedBinding: boolean }
  /** No session, so no trusted `return_to`: the caller renders an error page. */
  | { readonly kind: "rejected"; readonly error: BrokerError; readonly code: "invalid_state" | "server_error" };

export interface CompleteAuthorizationInput {
  readonly provider: string;
  readonly state: string;
  readonly code: string;
  readonly iss: string;
  readonly error: string;
  readonly errorDescription: string;
  /** A binding cookie the app forwarded from the browser, if any. */
  readonly binding?: string | undefined;
}

export interface CompleteAuthorizationResult {
  readonly integration: Integration;
  readonly returnTo: string;
}

interface ConsumedSession {
  readonly session: AuthorizationSession;
  /** Found through the browser's binding cookie (not the unbound fallback). */
  readonly consumedBinding: boolean;
}

export interface AuthorizationService {
  start(ctx: RequestContext, input: StartAuthorizationInput): Promise<StartAuthorizationResult>;
  /** `GET /oauth/callback/<provider>`: never throws for a flow failure, reports it instead. */
  handleCallback(input: CallbackInput): Promise<CallbackOutcome>;
  complete(ctx: RequestContext, input: CompleteAuthorizationInput): Promise<CompleteAuthorizationResult>;
}

/** `sha256(state)`, or `sha256(state + "." + binding)` for a browser-bound flow; hex. */
export function stateHash(state: string, binding?: string): string {
  const input = binding === undefined ? state : `${state}.${binding}`;
  return createHash("sha256").update(input, "utf8").digest("hex");
}

/** The binding cookie's name for a provider (cookie-name safe, RFC 6265 §4.1.1). */
export function flowCookieName(provider: string): string {
  return `oauth_broker_flow_${provider.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

/** RFC 6749 §4.1.2.1 `error` as it may appear in the app's URL: lower-case letters and `_`. */
export function sanitizeErrorCode(code: string): string {
  const cleaned = code.toLowerCase().replace(/[^a-z_]/g, "").slice(0, 64);
  return cleaned === "" ? "server_error" : cleaned;
}

/**
 * The `error` a failed flow sends the app to: the provider's own authorization error, or one of
 * `invalid_state`, `expired_state`, `invalid_issuer`, `invalid_grant` (code or verifier
 * refused), `invalid_scope` (the grant carried scopes the broker did not ask for),
 * `temporarily_unavailable`, `server_error`.
 */
export function callbackErrorCode(error: unknown, providerError?: string): string {
  if (isBrokerError(error, "authorization_session_invalid")) {
    switch (error.reason) {
      case "ISSUER_MISMATCH":
      case "ISSUER_MISSING":
        return "invalid_issuer";
      case "EXPIRED_STATE":
        return "expired_state";
      case "AUTHORIZATION_CODE_REJECTED":
      case "VERIFIER_MISSING":
        return "invalid_grant";
      default:
        return "invalid_state";
    }
  }
  if (providerError !== undefined && isBrokerError(error) && error.metadata["error"] === providerError.slice(0, 64)) {
    return sanitizeErrorCode(providerError);
  }
  if (isBrokerError(error, "authorization_denied")) return sanitizeErrorCode(error.metadata["error"] ?? "access_denied");
  if (
    isBrokerError(error, "provider_unavailable") ||
    isBrokerError(error, "provider_rate_limited") ||
    isBrokerError(error, "deadline_exceeded")
  ) {
    return "temporarily_unavailable";
  }
  return "server_error";
}

function sessionInvalid(reason: "INVALID_STATE" | "EXPIRED_STATE" | "PROVIDER_MISMATCH", provider: string): BrokerError {
  const messages = {
    INVALID_STATE: "the authorization session is unknown, already used, or belongs to someone else; start the authorization again",
    EXPIRED_STATE: "the authorization session expired; start the authorization again",
    PROVIDER_MISMATCH: `the authorization session was not started for provider "${provider}"; start the authorization again`,
  };
  return new BrokerError("authorization_session_invalid", messages[reason], { reason, metadata: { provider } });
}

function randomToken(): string {
  return randomBytes(RANDOM_BYTES).toString("base64url");
}

export function createAuthorizationService(deps: AuthorizationServiceDeps): AuthorizationService {
  const clock = deps.clock ?? systemClock;
  const exchangeTimeoutMs = deps.exchangeTimeoutMs ?? DEFAULT_EXCHANGE_TIMEOUT_MS;

  function providerConfig(id: string): ProviderConfig {
    const providers = deps.providers.list();
    const config = providers.find((p) => p.id === id);
    if (config !== undefined) return config;
    const known = providers.map((p) => p.id).join(", ") || "(none)";
    throw invalidArgument("provider", `${id === "" ? "required" : `unknown provider "${id}"`}; configured providers: ${known}`);
  }

  function usableClient(config: ProviderConfig): ProviderClient {
    const client = deps.providers.client(config.id);
    const credentials =
      config.kind === "sandbox" ||
      (config.clientId !== undefined && config.clientId !== "" && (config.clientSecret !== undefined || config.clientAuthMethod === "none"));
    if (client === undefined || !credentials) {
      throw new BrokerError(
        "failed_precondition",
        `provider "${config.id}" has no client credentials configured; set its clientId and clientSecret in BROKER_CONFIG`,
        { reason: "PROVIDER_NOT_CONFIGURED", metadata: { provider: config.id } },
      );
    }
    return client;
  }

  async function record(event: AuditEventInput): Promise<void> {
    await deps.audit.record(event);
  }

  /** Failure records must not hide the failure they describe. */
  async function recordFailure(event: AuditEventInput): Promise<void> {
    try {
      await deps.audit.record(event);
    } catch {
      // The flow already failed; the caller reports that failure.
    }
  }

  async function needsConsentForRefreshToken(config: ProviderConfig, userId: string): Promise<boolean> {
    if (!CONSENT_FOR_REFRESH_TOKEN.has(config.kind)) return false;
    const existing = await deps.integrations.findForUser(userId, config.id);
    return !existing.some((integration) => integration.status === "active" && integration.hasRefreshToken);
  }

  async function start(ctx: RequestContext, input: StartAuthorizationInput): Promise<StartAuthorizationResult> {
    const config = providerConfig(input.provider);
    const client = usableClient(config);
    const policy = deps.policy();
    policy.assertProviderAllowed(ctx.principal, config.id);
    const userId = policy.resolveUser(ctx.principal, input.userId, "start_authorization");
    const settings = deps.settings();
    const scopes = requestedScopes(config, client, input.scopes);
    const returnTo = resolveReturnTo(input.returnTo, parseReturnToAllowList(settings.returnToAllowList));
    deps.limitStart?.(userId);

    const ttlSeconds = Math.max(1, Math.min(Math.floor(settings.sessionTtlSeconds), MAX_SESSION_TTL_SECONDS));
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
    const sessionId = randomUUID();
    const state = randomToken();
    const codeVerifier = config.pkce ? randomToken() : undefined;
    const nonce = OIDC_KINDS.has(config.kind) ? randomToken() : undefined;
    const redirectUri = deps.providers.redirectUri(config.id);
    const binding = ctx.principal.kind === "user" ? randomToken() : undefined;

    const authorizationUrl = await client.authorizationUrl({
      state,
      scopes,
      redirectUri,
      codeVerifier,
      nonce,
      forceConsent: await needsConsentForRefreshToken(config, userId),
    });
    // What the provider is really asked for: the client adds the protocol's scopes (`openid`,
    // `offline_access` where advertised), and the grant is checked against those.
    const askedScopes = requestedOnTheWire(scopes, authorizationUrl);
    const codeVerifierCiphertext =
      codeVerifier === undefined ? null : await deps.cipher.encrypt({ plaintext: codeVerifier, context: sessionId });
    await deps.sessions.create({
      id: sessionId,
      stateHash: stateHash(state, binding),
      userId,
      provider: config.id,
      requestedScopes: askedScopes,
      returnTo,
      codeVerifierCiphertext,
      nonce: nonce ?? null,
      createdAt: now,
      expiresAt,
    });
    await record({
      action: "authorization.started",
      outcome: "success",
      ...auditCaller(ctx),
      userId,
      provider: config.id,
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
              cookieName: flowCookieName(config.id),
              value: binding,
              path: new URL(redirectUri).pathname,
              maxAgeSeconds: ttlSeconds,
              secure: deps.publicUrl.protocol === "https:",
            },
    };
  }

  /** The bound session first (the cookie came with the request), then an unbound one. */
  async function consumeSession(state: string, binding: string | undefined): Promise<ConsumedSession | undefined> {
    if (state === "" || state.length > MAX_STATE_LENGTH) return undefined;
    if (binding !== undefined && binding !== "") {
      const bound = await deps.sessions.consume(stateHash(state, binding));
      if (bound !== undefined) return { session: bound, consumedBinding: true };
    }
    const unbound = await deps.sessions.consume(stateHash(state));
    return unbound === undefined ? undefined : { session: unbound, consumedBinding: false };
  }

  /** Session checks shared by the callback and CompleteAuthorization, after ownership. */
  function checkSession(session: AuthorizationSession, provider: string): void {
    if (session.provider !== provider) throw sessionInvalid("PROVIDER_MISMATCH", provider);
    if (session.expiresAt.getTime() <= clock.now().getTime()) throw sessionInvalid("EXPIRED_STATE", provider);
  }

  async function exchange(session: AuthorizationSession, state: string, query: URLSearchParams, deadline?: number): Promise<ProviderGrant> {
    const config = providerConfig(session.provider);
    const client = usableClient(config);
    const redirectUri = deps.providers.redirectUri(config.id);
    let codeVerifier: string | undefined;
    if (session.codeVerifierCiphertext !== null) {
      codeVerifier = await deps.cipher.decrypt({ ciphertext: session.codeVerifierCiphertext, context: session.id });
    } else if (config.pkce) {
      // RFC 7636 §4.5: fail closed rather than exchange a PKCE-protected code without its verifier.
      throw new BrokerError("authorization_session_invalid", "the authorization session lost its PKCE verifier; start the authorization again", {
        reason: "VERIFIER_MISSING",
        metadata: { provider: config.id },
      });
    }
    const callbackUrl = new URL(redirectUri);
    callbackUrl.search = query.toString();
    const budget = deadline === undefined ? exchangeTimeoutMs : Math.min(exchangeTimeoutMs, deadline - Date.now());
    return bounded(Math.max(0, budget), config.id, (signal) =>
      client.exchangeCode({
        callbackUrl,
        expectedState: state,
        redirectUri,
        codeVerifier,
        nonce: session.nonce ?? undefined,
        requestedScopes: session.requestedScopes,
        signal,
      }),
    );
  }

  function accountOf(session: AuthorizationSession, grant: ProviderGrant): ExternalAccount {
    if (grant.account !== undefined) return grant.account;
    throw new BrokerError("provider_error", `provider "${session.provider}" did not identify the connected account`, {
      reason: "ACCOUNT_UNKNOWN",
      metadata: { provider: session.provider },
    });
  }

  /**
   * Stores the grant: the integration id is known before encryption (ciphertexts are bound to
   * it), both tokens are encrypted in one batch, and the row and its token set are written in
   * one transaction, so a failure leaves nothing half-created.
   */
  async function store(
    session: AuthorizationSession,
    tokens: TokenSet,
    account: ExternalAccount,
    existing: Integration | undefined,
  ): Promise<{ integration: Integration; created: boolean }> {
    let id = existing?.id ?? randomUUID();
    for (let attempt = 0; ; attempt += 1) {
      const plaintexts = [{ plaintext: tokens.accessToken, context: id }];
      if (tokens.refreshToken !== undefined) plaintexts.push({ plaintext: tokens.refreshToken, context: id });
      const [accessTokenCiphertext = "", refreshTokenCiphertext = null] = await deps.cipher.encryptBatch(plaintexts);
      try {
        return await deps.integrations.upsertWithTokens({
          id,
          userId: session.userId,
          provider: session.provider,
          externalAccount: account,
          grantedScopes: tokens.scopes,
          // A null refresh token keeps the stored one: Google issues none on a repeated consent.
          tokens: { accessTokenCiphertext, refreshTokenCiphertext, tokenType: tokens.tokenType, expiresAt: tokens.expiresAt, scopes: tokens.scopes },
        });
      } catch (error) {
        // A concurrent flow for the same account created the row first: its id wins, and the
        // tokens are encrypted again for it (ciphertexts are bound to their integration id).
        if (attempt > 0 || !isBrokerError(error, "already_exists")) throw error;
        const winner = error.metadata["integration_id"] ?? (await deps.integrations.findLive(session.userId, session.provider, account.id))?.id;
        if (winner === undefined) throw error;
        id = winner;
      }
    }
  }

  async function finish(
    session: AuthorizationSession,
    state: string,
    query: URLSearchParams,
    caller: Pick<AuditEventInput, "caller" | "callerKind" | "requestId" | "peer">,
    deadline?: number,
  ): Promise<Integration> {
    const grant = await exchange(session, state, query, deadline);
    const account = accountOf(session, grant);
    const existing = await deps.integrations.findLive(session.userId, session.provider, account.id);
    // No widened grants (RFC 6749 §3.3, oauth-client-security.md §6): checked before anything is stored.
    const provider = providerConfig(session.provider);
    await refuseWidenedGrant(deps, { session, provider, client: usableClient(provider), tokens: grant.tokens, account });
    const { integration, created } = await store(session, grant.tokens, account, existing);
    if (!created) notifyChanged(integration.id);
    await record({
      action: "authorization.completed",
      outcome: "success",
      ...caller,
      userId: session.userId,
      integrationId: integration.id,
      provider: session.provider,
      scopes: integration.grantedScopes,
      details: { session_id: session.id, created: String(created), external_account_id: integration.externalAccount.id },
    });
    return integration;
  }

  function notifyChanged(integrationId: string): void {
    try {
      deps.onIntegrationChanged?.(integrationId);
    } catch {
      // A cache that cannot be told expires on its own; the stored grant is already correct.
    }
  }

  function failureEvent(error: BrokerError, provider: string, session: AuthorizationSession | undefined, caller: Pick<AuditEventInput, "caller" | "callerKind" | "requestId" | "peer">): AuditEventInput {
    return {
      action: "authorization.failed",
      outcome: error.code === "authorization_denied" ? "denied" : "failure",
      reason: error.reason,
      ...caller,
      userId: session?.userId,
      provider,
      details: {
        code: error.code,
        ...(session === undefined ? {} : { session_id: session.id }),
        ...(error.reason === "SCOPE_WIDENED" ? widenedGrantAuditDetails(error) : {}),
      },
    };
  }

  async function handleCallback(input: CallbackInput): Promise<CallbackOutcome> {
    const state = input.query.get("state") ?? "";
    const network = { requestId: input.requestId, peer: input.peer };
    let consumed: ConsumedSession | undefined;
    try {
      consumed = await consumeSession(state, input.binding);
    } catch (error) {
      return { kind: "rejected", error: asBrokerError(error), code: "server_error" };
    }
    if (consumed === undefined) {
      const error = sessionInvalid("INVALID_STATE", input.provider);
      await recordFailure(failureEvent(error, input.provider, undefined, network));
      return { kind: "rejected", error, code: "invalid_state" };
    }
    const { session, consumedBinding } = consumed;
    const caller = { ...network, caller: session.userId, callerKind: "user" };
    try {
      checkSession(session, input.provider);
      const integration = await finish(session, state, input.query, caller);
      return {
        kind: "connected",
        integration,
        location: withOutcome(session.returnTo, { integration_id: integration.id, status: "connected" }),
        consumedBinding,
      };
    } catch (thrown) {
      const error = asBrokerError(thrown);
      await recordFailure(failureEvent(error, input.provider, session, caller));
      const code = callbackErrorCode(error, input.query.get("error") ?? undefined);
      return { kind: "failed", error, code, location: withOutcome(session.returnTo, { error: code }), consumedBinding };
    }
  }

  async function complete(ctx: RequestContext, input: CompleteAuthorizationInput): Promise<CompleteAuthorizationResult> {
    providerConfig(input.provider);
    deps.policy().assertProviderAllowed(ctx.principal, input.provider);
    if (input.state === "") throw invalidArgument("state", "required: the state parameter of the provider's redirect");
    if (input.code === "" && input.error === "") {
      throw invalidArgument("code", "required unless the provider's redirect carried an error");
    }
    const caller = auditCaller(ctx);
    const session = (await consumeSession(input.state, input.binding))?.session;
    try {
      if (session === undefined || !actsFor(ctx.principal, session.userId)) throw sessionInvalid("INVALID_STATE", input.provider);
      checkSession(session, input.provider);
      const query = new URLSearchParams({ state: input.state });
      if (input.code !== "") query.set("code", input.code);
      if (input.iss !== "") query.set("iss", input.iss);
      if (input.error !== "") query.set("error", input.error);
      if (input.errorDescription !== "") query.set("error_description", input.errorDescription);
      const integration = await finish(session, input.state, query, caller, ctx.deadline);
      return { integration, returnTo: session.returnTo };
    } catch (thrown) {
      const error = asBrokerError(thrown);
      await recordFailure(failureEvent(error, input.provider, session, caller));
      throw error;
    }
  }

  /**
   * The session's user, or a service or admin the policy lets act for that user. A user who
   * is not the owner gets the same answer as for an unknown state.
   */
  function actsFor(principal: Principal, userId: string): boolean {
    const policy = deps.policy();
    if (principal.kind === "user") return principal.subject === userId;
    policy.resolveUser(principal, userId, "start_authorization");
    return true;
  }

  return { start, handleCallback, complete };
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

function asBrokerError(error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  return new BrokerError("internal", "the authorization could not be completed", { cause: error });
}

/**
 * Runs `fn` with a signal that aborts after `timeoutMs`, and gives up waiting then even if `fn`
 * ignores the signal: a late answer is dropped, so nothing is stored after the caller was told
 * the flow failed.
 */
async function bounded<T>(timeoutMs: number, provider: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(
        new BrokerError("provider_unavailable", `provider "${provider}" did not complete the code exchange within ${timeoutMs} ms; start the authorization again`, {
          reason: "PROVIDER_TIMEOUT",
          metadata: { provider, operation: "code_exchange" },
          retryAfterMs: 5_000,
        }),
      );
    }, timeoutMs);
  });
  try {
    return await Promise.race([fn(controller.signal), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
