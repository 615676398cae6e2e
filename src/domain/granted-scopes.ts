/**
 * No widened grants (design.md §5). The consent page is in the user's browser, so its `scope=`
 * can be edited; a provider grants whatever it allows. A grant is stored only when every scope
 * it carries was asked for by the broker or was already held by the same integration (Google's
 * `include_granted_scopes` and Microsoft's consented permissions come back with every new
 * token). Anything else is revoked at the provider where it can be, and refused.
 */
import { BrokerError } from "./errors.js";
import type { ProviderClient, RevocationResult } from "./ports.js";
import type { TokenSet } from "./types.js";

/** Scope names listed in an error or audit record; a hostile grant may carry many. */
const MAX_LISTED_SCOPES = 10;

/** How a widened grant was disposed of at the provider, for the audit record. */
export type WidenedGrantRevocation = RevocationResult["outcome"] | "failed";

/**
 * The granted scopes outside `allowed`, compared in the provider's own spelling (`canonicalScope`),
 * so `email` asked and `https://www.googleapis.com/auth/userinfo.email` granted is the same scope.
 */
export function widenedScopes(
  granted: readonly string[],
  allowed: readonly string[],
  canonicalScope: (scope: string) => string = (scope) => scope,
): string[] {
  const permitted = new Set(allowed.map(canonicalScope));
  return granted.filter((scope) => !permitted.has(canonicalScope(scope)));
}

/**
 * Revokes the whole grant: the refresh token when there is one (RFC 7009 §2.1: revoking it
 * revokes the access tokens of the same grant), else the access token. One attempt: with no
 * integration stored there is no row to queue a retry on.
 */
export async function revokeWidenedGrant(client: ProviderClient, tokens: TokenSet): Promise<WidenedGrantRevocation> {
  try {
    const result =
      tokens.refreshToken === undefined
        ? await client.revoke(tokens.accessToken, "access_token")
        : await client.revoke(tokens.refreshToken, "refresh_token");
    return result.outcome;
  } catch {
    return "failed";
  }
}

/** `authorization_denied` with `error=invalid_scope` (RFC 6749 §4.1.2.1) for the app. */
export function scopeWidened(provider: string, widened: readonly string[], revocation: WidenedGrantRevocation): BrokerError {
  const listed = widened.slice(0, MAX_LISTED_SCOPES).join(" ");
  const more = widened.length > MAX_LISTED_SCOPES ? ` and ${widened.length - MAX_LISTED_SCOPES} more` : "";
  return new BrokerError(
    "authorization_denied",
    `provider "${provider}" granted scopes the authorization did not ask for (${listed}${more}); the grant was refused and nothing was stored; start the authorization again without changing the consent page's scopes`,
    {
      reason: "SCOPE_WIDENED",
      metadata: { provider, error: "invalid_scope", widened_scopes: listed, widened_count: String(widened.length), revocation },
    },
  );
}
