/**
 * Who may use which integration: the order of the policy checks of the integration RPCs and of
 * GetAccessToken. Refusals that depend on the principal alone come before any lookup, and an
 * integration the caller may not use answers like a missing one, so no answer reveals whether
 * another user's integration exists (policy.ts holds the rules themselves).
 */
import { invalidArgument } from "./errors.js";
import { HiddenDenial, integrationNotFound, type FilterPurpose, type PolicyHolder } from "./policy.js";
import type { TokenService } from "./tokens/token-service-api.js";
import type { TokenSelector } from "./tokens/integration-resolution.js";
import type { Integration, Principal } from "./types.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Which integrations a list, watch or sync reads: `undefined` means every user or provider. */
export interface IntegrationScope {
  readonly userId: string | undefined;
  readonly providers: readonly string[] | undefined;
}

/** GetAccessToken's selector: an integration id, or user + provider (+ external account). */
export type TokenIntegrationRequest =
  | { readonly integrationId: string }
  | { readonly userId: string; readonly provider: string; readonly externalAccountId: string };

export interface IntegrationAccess {
  /** GetIntegration, RefreshIntegration, DeleteIntegration: the integration, once the caller may act on it. */
  one(principal: Principal, id: string, find: (id: string) => Promise<Integration | undefined>): Promise<Integration>;
  /** ListIntegrations and WatchIntegrations: the user (checked) and providers the caller may read. */
  scope(principal: Principal, requestedUserId: string, purpose: Exclude<FilterPurpose, "sync_integrations">): IntegrationScope;
  /** SyncIntegrations: as `scope`, and only an admin syncs every user at once. */
  syncScope(principal: Principal, requestedUserId: string): IntegrationScope;
  /** GetAccessToken: the integration whose token the caller may have for `requiredScopes`. */
  tokenIntegration(
    principal: Principal,
    request: TokenIntegrationRequest,
    requiredScopes: readonly string[],
    tokens: Pick<TokenService, "resolve">,
  ): Promise<Integration>;
  /**
   * What tokenIntegration answers at once, from the resolver's memory; undefined when it must
   * decide (not remembered, or refused: the refusal is tokenIntegration's to answer).
   */
  warmTokenIntegration(
    principal: Principal,
    request: TokenIntegrationRequest,
    requiredScopes: readonly string[],
    tokens: Pick<TokenService, "resolveWarm">,
  ): Integration | undefined;
}

/**
 * The policy checks before GetAccessToken's lookup: those that depend on the principal alone,
 * then the selector, and for an id the check on the integration found. An integration the caller
 * may not use answers exactly like a missing id: the policy decides before its status is checked,
 * and before any refresh, audit or last-use write.
 */
function tokenLookup(
  current: ReturnType<Pick<PolicyHolder, "current">["current"]>,
  principal: Principal,
  request: TokenIntegrationRequest,
): { selector: TokenSelector; authorize?: (integration: Integration) => void } {
  if ("integrationId" in request) {
    const { integrationId } = request;
    current.assertMayActForUsers(principal);
    return {
      selector: { integrationId },
      authorize: (found) => {
        if (!current.canSeeIntegration(principal, found.userId, found.provider)) {
          throw integrationNotFound(
            integrationId,
            new HiddenDenial("INTEGRATION_NOT_ACCESSIBLE", "GetAccessToken asked for an integration outside the caller's policy", integrationId),
          );
        }
      },
    };
  }
  const userId = current.resolveUser(principal, request.userId, "get_access_token");
  current.assertProviderAllowed(principal, request.provider);
  return { selector: { userId, provider: request.provider, externalAccountId: request.externalAccountId } };
}

export function createIntegrationAccess(policy: Pick<PolicyHolder, "current">): IntegrationAccess {
  function scope(principal: Principal, requestedUserId: string, purpose: FilterPurpose): IntegrationScope {
    const current = policy.current();
    return { userId: current.resolveUser(principal, requestedUserId, purpose), providers: current.visibleProviders(principal) };
  }

  return {
    async one(principal, id, find) {
      policy.current().assertMayActForUsers(principal);
      if (!UUID.test(id)) throw invalidArgument("id", "must be an integration id (a UUID)");
      const integration = await find(id);
      // The same answer as for another user's integration: existence is not revealed.
      if (!integration) throw integrationNotFound(id);
      policy.current().assertCanAccess(principal, integration.userId, { provider: integration.provider, integrationId: id });
      return integration;
    },

    scope,

    syncScope(principal, requestedUserId) {
      const result = scope(principal, requestedUserId, "sync_integrations");
      // Everyone's integrations at once is an operator's action, not a service's.
      if (result.userId === undefined && principal.kind !== "admin") {
        throw invalidArgument("user_id", `required when a ${principal.kind} calls SyncIntegrations (only admins sync every user)`);
      }
      return result;
    },

    async tokenIntegration(principal, request, requiredScopes, tokens) {
      const current = policy.current();
      const lookup = tokenLookup(current, principal, request);
      const integration = await tokens.resolve(lookup.selector, lookup.authorize);
      current.checkTokenRequest(principal, { provider: integration.provider, requiredScopes, grantedScopes: integration.grantedScopes });
      return integration;
    },

    warmTokenIntegration(principal, request, requiredScopes, tokens) {
      // The same checks as tokenIntegration, in the same order; any refusal is its to answer.
      try {
        const current = policy.current();
        const lookup = tokenLookup(current, principal, request);
        const integration = tokens.resolveWarm(lookup.selector, lookup.authorize);
        if (integration === undefined) return undefined;
        current.checkTokenRequest(principal, { provider: integration.provider, requiredScopes, grantedScopes: integration.grantedScopes });
        return integration;
      } catch {
        return undefined;
      }
    },
  };
}
