/** What makes an integration unable to answer a token request, as the errors callers act on. */
import { BrokerError } from "../errors.js";
import { GRANT_REVOKED_SCOPE_WIDENED } from "../granted-scopes.js";
import { ROTATED_TOKEN_LOST } from "./refresh-takeover.js";
import type { Integration } from "../types.js";

const NO_REFRESH_TOKEN_CAUSE = "no_refresh_token";

/**
 * A token that must be renewed, held without a refresh token → FAILED_PRECONDITION
 * `NO_REFRESH_TOKEN`. The grant itself is not refused: a caller asking for less time still gets
 * the token until it expires, so the integration stays active.
 */
export function noRefreshToken(integration: Pick<Integration, "id" | "provider">, accessTokenExpiresAt: Date): BrokerError {
  return new BrokerError(
    "failed_precondition",
    `the ${integration.provider} provider granted no refresh token, so the broker cannot renew the access token (it expires at ${accessTokenExpiresAt.toISOString()}); the user must connect their account again`,
    {
      reason: "NO_REFRESH_TOKEN",
      metadata: { integration_id: integration.id, provider: integration.provider, access_token_expire_time: accessTokenExpiresAt.toISOString() },
    },
  );
}

/**
 * Deleted → NOT_FOUND; NEEDS_REAUTH → FAILED_PRECONDITION `INTEGRATION_NEEDS_REAUTH`, or
 * `ROTATED_TOKEN_LOST` when the stored refresh token was refused after a refresh with it got no
 * recorded answer (refresh-takeover.ts).
 */
export function checkStatus(integration: Integration): void {
  if (integration.status === "deleted") {
    throw new BrokerError("not_found", `integration ${integration.id} was deleted`, { metadata: { integration_id: integration.id } });
  }
  if (integration.status === "needs_reauth") {
    const what = needsReauthCause(integration.statusReason);
    throw new BrokerError(
      "integration_needs_reauth",
      `the user must connect their ${integration.provider} account again (${what})`,
      {
        reason: integration.statusReason === ROTATED_TOKEN_LOST ? "ROTATED_TOKEN_LOST" : "INTEGRATION_NEEDS_REAUTH",
        metadata: { integration_id: integration.id, provider: integration.provider, cause: integration.statusReason },
      },
    );
  }
}

function needsReauthCause(statusReason: string): string {
  // Earlier versions marked a grant without refresh token this way at its first expiry.
  if (statusReason === NO_REFRESH_TOKEN_CAUSE) return "the provider granted no refresh token";
  if (statusReason === ROTATED_TOKEN_LOST) return "the provider refused the stored refresh token after a refresh with it got no recorded answer; a rotated successor, if any, is lost";
  if (statusReason === GRANT_REVOKED_SCOPE_WIDENED) {
    return "the provider ended the account's whole grant when the broker revoked a later grant with scopes nobody asked for";
  }
  return "the provider refused the stored grant";
}

/** Required scopes not granted → FAILED_PRECONDITION `SCOPE_NOT_GRANTED` naming the missing ones. */
export function checkScopes(integration: Integration, required: readonly string[]): void {
  const granted = new Set(integration.grantedScopes);
  const missing = required.filter((scope) => !granted.has(scope));
  if (missing.length > 0) {
    throw new BrokerError(
      "scope_not_granted",
      `the integration lacks the scopes ${missing.join(", ")}; send the user through StartAuthorization with them (incremental consent)`,
      {
        reason: "SCOPE_NOT_GRANTED",
        metadata: { integration_id: integration.id, provider: integration.provider, missing_scopes: missing.join(" ") },
      },
    );
  }
}

/** A `min_valid_for` no refresh can satisfy: the provider's tokens live shorter. */
export function lifetimeTooShort(integration: Integration, lifetimeMs: number, minValidForMs: number): BrokerError {
  const lifetime = Math.max(0, Math.floor(lifetimeMs / 1000));
  return new BrokerError(
    "failed_precondition",
    `the provider ${integration.provider} issues tokens valid for ${lifetime} s, less than the ${Math.ceil(minValidForMs / 1000)} s asked for; ask for less`,
    {
      reason: "TOKEN_LIFETIME_TOO_SHORT",
      metadata: { integration_id: integration.id, provider: integration.provider, token_lifetime_seconds: String(lifetime) },
      fieldViolations: [{ field: "min_valid_for", description: `longer than the provider's token lifetime (${lifetime} s)` }],
    },
  );
}

/** The integration's token set is gone (deleted meanwhile) → NOT_FOUND. */
export function noTokens(integrationId: string): BrokerError {
  return new BrokerError("not_found", `integration ${integrationId} has no tokens (deleted?)`);
}

/** A shared token operation (a load, a refresh) that never settled, given up → DEADLINE_EXCEEDED `OPERATION_ABANDONED`. */
export function operationAbandoned(what: string): (integrationId: string, afterMs: number) => BrokerError {
  return (integrationId, afterMs) =>
    new BrokerError("deadline_exceeded", `${what} of integration ${integrationId} did not finish within ${afterMs} ms and was abandoned; retry`, {
      reason: "OPERATION_ABANDONED",
      retryAfterMs: 1_000,
      metadata: { integration_id: integrationId },
    });
}
