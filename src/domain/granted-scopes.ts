/**
 * No widened grants (design.md §5). The consent page is in the user's browser, so its `scope=`
 * can be edited; a provider grants whatever it allows. A grant is stored only when every scope
 * it carries was asked for by the broker or was already held at the provider by the same
 * account through the same OAuth client (Google's `include_granted_scopes` returns every scope
 * that account granted the client, whichever broker user or provider entry asked; Microsoft's
 * consented permissions come back with every new token). Anything else is revoked at the
 * provider where it can be, and refused.
 */
import type { AuthorizationIntegrationStore } from "./authorization-ports.js";
import { BrokerError, isBrokerError } from "./errors.js";
import type { Logger, ProviderClient, RevocationResult } from "./ports.js";
import type { ProviderProfile } from "./provider-profile.js";
import type { AuthorizationSession, ExternalAccount, TokenSet } from "./types.js";

/** Scope names listed in an error or audit record; a hostile grant may carry many. */
const MAX_LISTED_SCOPES = 10;
/** Integration ids listed in an audit record. */
const MAX_LISTED_INTEGRATIONS = 10;

/** The status reason of an integration whose grant ended with the revocation of a widened one. */
export const GRANT_REVOKED_SCOPE_WIDENED = "grant_revoked_scope_widened";

/** How a widened grant was disposed of at the provider, for the audit record. */
export type WidenedGrantRevocation = RevocationResult["outcome"] | "failed";

export interface WidenedGrantDeps {
  readonly providers: { list(): readonly ProviderProfile[] };
  readonly integrations: Pick<AuthorizationIntegrationStore, "findLiveForAccount" | "markNeedsReauth">;
  readonly logger?: Pick<Logger, "warn"> | undefined;
  /** Told about each integration marked for re-authorization (token cache invalidation). */
  readonly onIntegrationChanged?: ((integrationId: string) => void) | undefined;
}

export interface WidenedGrantInput {
  readonly session: AuthorizationSession;
  readonly provider: ProviderProfile;
  readonly client: ProviderClient;
  readonly tokens: TokenSet;
  readonly account: ExternalAccount;
}

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
 * Two provider entries are one OAuth client at one authorization server when their client ids
 * match there: Google and YouTube entries may share a Google client, and the grant at Google
 * is per client and account, not per entry.
 */
export function sameProviderClient(a: ProviderProfile, b: ProviderProfile): boolean {
  return a.id === b.id || (a.grantHolder !== undefined && a.grantHolder === b.grantHolder);
}

/**
 * Throws `SCOPE_WIDENED` when the grant carries scopes beyond what the session asked for plus
 * what the account already held through the same client. The widened grant is revoked; where
 * that ends the whole grant (Google), the account's existing integrations hold a dead refresh
 * token from then on and are marked for re-authorization, so nobody is handed a dead token as
 * `active`.
 */
export async function refuseWidenedGrant(deps: WidenedGrantDeps, input: WidenedGrantInput): Promise<void> {
  const { session, provider, client, tokens, account } = input;
  const sharing = deps.providers.list().filter((other) => sameProviderClient(provider, other)).map((other) => other.id);
  const live = await deps.integrations.findLiveForAccount(sharing, account.id);
  const held = live.flatMap((integration) => integration.grantedScopes);
  const widened = widenedScopes(tokens.scopes, [...session.requestedScopes, ...held], client.canonicalScope?.bind(client));
  if (widened.length === 0) return;
  const revocation = await revokeWidenedGrant(client, tokens, deps.logger, provider.id);
  const ended =
    revocation.outcome === "revoked" && provider.revocationEndsWholeGrant
      ? await markGrantEnded(deps, live.filter((integration) => integration.status === "active").map((integration) => integration.id))
      : [];
  throw scopeWidened(provider.id, widened, revocation, ended);
}

interface RevocationAttempt {
  readonly outcome: WidenedGrantRevocation;
  /** Why it failed, in a few words safe for the audit trail (an error code, never a token). */
  readonly cause?: string | undefined;
}

/**
 * Revokes the whole grant: the refresh token when there is one (RFC 7009 §2.1: revoking it
 * revokes the access tokens of the same grant), else the access token. One attempt: with no
 * integration stored there is no row to queue a retry on.
 */
export async function revokeWidenedGrant(
  client: ProviderClient,
  tokens: TokenSet,
  logger?: WidenedGrantDeps["logger"],
  provider: string = client.id,
): Promise<RevocationAttempt> {
  try {
    const result =
      tokens.refreshToken === undefined
        ? await client.revoke(tokens.accessToken, "access_token")
        : await client.revoke(tokens.refreshToken, "refresh_token");
    return { outcome: result.outcome };
  } catch (error) {
    const cause = isBrokerError(error) ? (error.reason === error.code.toUpperCase() ? error.code : `${error.code} ${error.reason}`) : "internal";
    // The logger's error serializer scrubs credential-looking text; the token itself is never passed.
    logger?.warn({ err: error, provider, cause }, "could not revoke a widened grant at the provider; it may stay valid there");
    return { outcome: "failed", cause };
  }
}

async function markGrantEnded(deps: WidenedGrantDeps, ids: readonly string[]): Promise<string[]> {
  const marked: string[] = [];
  for (const id of ids) {
    try {
      await deps.integrations.markNeedsReauth(id, GRANT_REVOKED_SCOPE_WIDENED);
      marked.push(id);
    } catch (error) {
      // Its next refresh meets invalid_grant and marks it then; the refusal itself stands.
      deps.logger?.warn({ err: error, integrationId: id }, "could not mark an integration whose grant the provider ended");
      continue;
    }
    try {
      deps.onIntegrationChanged?.(id);
    } catch {
      // A cache that cannot be told expires on its own.
    }
  }
  return marked;
}

/** What the audit record of a refused widened grant says beyond the error's metadata. */
class WidenedGrantAudit extends Error {
  override readonly name = "WidenedGrantAudit";
  constructor(readonly details: Readonly<Record<string, string>>) {
    super("widened grant refused");
  }
}

/** `authorization_denied` with `error=invalid_scope` (RFC 6749 §4.1.2.1) for the app. */
export function scopeWidened(
  provider: string,
  widened: readonly string[],
  revocation: RevocationAttempt,
  endedIntegrations: readonly string[] = [],
): BrokerError {
  const listed = widened.slice(0, MAX_LISTED_SCOPES).join(" ");
  const more = widened.length > MAX_LISTED_SCOPES ? ` and ${widened.length - MAX_LISTED_SCOPES} more` : "";
  const ended =
    endedIntegrations.length === 0
      ? ""
      : `; revoking it ended the account's whole grant at the provider, so its existing connection must be reconnected too`;
  const audit: Record<string, string> = {};
  if (revocation.cause !== undefined) audit["revocation_error"] = revocation.cause;
  if (endedIntegrations.length > 0) {
    // Ids only in the audit trail: another user's integration may be among them.
    audit["needs_reauth_count"] = String(endedIntegrations.length);
    audit["needs_reauth_integrations"] = endedIntegrations.slice(0, MAX_LISTED_INTEGRATIONS).join(" ");
    audit["needs_reauth_reason"] = GRANT_REVOKED_SCOPE_WIDENED;
  }
  return new BrokerError(
    "authorization_denied",
    `provider "${provider}" granted scopes the authorization did not ask for (${listed}${more}); the grant was refused and nothing was stored${ended}; start the authorization again without changing the consent page's scopes`,
    {
      cause: new WidenedGrantAudit(audit),
      reason: "SCOPE_WIDENED",
      metadata: {
        provider,
        error: "invalid_scope",
        widened_scopes: listed,
        widened_count: String(widened.length),
        revocation: revocation.outcome,
      },
    },
  );
}

/** The audit details of a `SCOPE_WIDENED` refusal: the error's metadata plus what only the audit may say. */
export function widenedGrantAuditDetails(error: BrokerError): Record<string, string> {
  const details: Record<string, string> = {};
  for (const key of ["widened_scopes", "widened_count", "revocation"]) {
    const value = error.metadata[key];
    if (value !== undefined) details[key] = value;
  }
  return error.cause instanceof WidenedGrantAudit ? { ...details, ...error.cause.details } : details;
}
