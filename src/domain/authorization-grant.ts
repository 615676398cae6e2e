/**
 * The grant a provider's redirect carries: the code exchanged (with the PKCE verifier, within a
 * time bound), the account identified, the granted scopes checked against what was asked, and
 * the integration created or updated with its token set encrypted.
 */
import { randomUUID } from "node:crypto";
import type { FlowContext } from "./authorization-context.js";
import type { AuditCaller } from "./authorization-outcome.js";
import { BrokerError, isBrokerError } from "./errors.js";
import { refuseWidenedGrant } from "./granted-scopes.js";
import type { ProviderGrant } from "./ports.js";
import type { AuthorizationSession, ExternalAccount, Integration, TokenSet } from "./types.js";

export type ReceiveGrant = (
  session: AuthorizationSession,
  state: string,
  query: URLSearchParams,
  caller: AuditCaller,
  deadline?: number,
) => Promise<Integration>;

export function createGrantReceiver(flow: FlowContext): ReceiveGrant {
  async function exchange(session: AuthorizationSession, state: string, query: URLSearchParams, deadline?: number): Promise<ProviderGrant> {
    const profile = flow.provider(session.provider);
    const client = flow.usableClient(profile);
    const redirectUri = flow.deps.providers.redirectUri(profile.id);
    let codeVerifier: string | undefined;
    if (session.codeVerifierCiphertext !== null) {
      codeVerifier = await flow.deps.cipher.decrypt({ ciphertext: session.codeVerifierCiphertext, context: session.id });
    } else if (profile.pkce) {
      // RFC 7636 §4.5: fail closed rather than exchange a PKCE-protected code without its verifier.
      throw new BrokerError("authorization_session_invalid", "the authorization session lost its PKCE verifier; start the authorization again", {
        reason: "VERIFIER_MISSING",
        metadata: { provider: profile.id },
      });
    }
    const callbackUrl = new URL(redirectUri);
    callbackUrl.search = query.toString();
    const budget = deadline === undefined ? flow.exchangeTimeoutMs : Math.min(flow.exchangeTimeoutMs, deadline - Date.now());
    return bounded(Math.max(0, budget), profile.id, (signal) =>
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
      const [accessTokenCiphertext = "", refreshTokenCiphertext = null] = await flow.deps.cipher.encryptBatch(plaintexts);
      try {
        return await flow.deps.integrations.upsertWithTokens({
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
        const winner = error.metadata["integration_id"] ?? (await flow.deps.integrations.findLive(session.userId, session.provider, account.id))?.id;
        if (winner === undefined) throw error;
        id = winner;
      }
    }
  }

  async function receiveGrant(
    session: AuthorizationSession,
    state: string,
    query: URLSearchParams,
    caller: AuditCaller,
    deadline?: number,
  ): Promise<Integration> {
    const grant = await exchange(session, state, query, deadline);
    const account = accountOf(session, grant);
    const existing = await flow.deps.integrations.findLive(session.userId, session.provider, account.id);
    // No widened grants (RFC 6749 §3.3, oauth-client-security.md §6): checked before anything is stored.
    const provider = flow.provider(session.provider);
    await refuseWidenedGrant(flow.deps, { session, provider, client: flow.usableClient(provider), tokens: grant.tokens, account });
    const { integration, created } = await store(session, grant.tokens, account, existing);
    if (!created) flow.notifyChanged(integration.id);
    await flow.record({
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

  return receiveGrant;
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
