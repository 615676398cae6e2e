/**
 * Which integration a token request names: an id, or a user + provider (+ external account)
 * pair. The answer is remembered for a short while (integration-memory.ts), so the hot path
 * asks PostgreSQL once per integration rather than once per call; concurrent callers that find
 * nothing remembered share one lookup, so a thousand callers of one integration arriving at once
 * queue one query on the pool instead of a thousand.
 */
import { BrokerError } from "../errors.js";
import { integrationNotFound } from "../policy.js";
import type { Clock, TokenStore } from "../ports.js";
import type { Integration } from "../types.js";
import { checkStatus } from "./integration-checks.js";
import { createResolvedIntegrations } from "./integration-memory.js";
import { createSingleFlight, type SingleFlightOptions } from "./single-flight.js";

/**
 * How long a resolved integration is reused without asking PostgreSQL. Changes that matter to
 * callers (refresh, re-authorization needed, delete, reconnect) evict it at once through the
 * change feed; this bound covers the rest.
 */
const RESOLVE_TTL_MS = 5_000;

export interface TokenSelector {
  readonly integrationId?: string | undefined;
  readonly userId?: string | undefined;
  readonly provider?: string | undefined;
  readonly externalAccountId?: string | undefined;
}

export interface IntegrationResolver {
  /** See `TokenService.resolve`. */
  resolve(selector: TokenSelector, authorize?: (integration: Integration) => void): Promise<Integration>;
  /**
   * The integration `resolve` would answer at once from memory, or undefined when `resolve` must
   * decide (not remembered, refused by `authorize`, not usable).
   */
  resolveWarm(selector: TokenSelector, authorize?: (integration: Integration) => void): Integration | undefined;
  /** Forgets every selector that named the integration. */
  forget(integrationId: string): void;
}

export function createIntegrationResolver(deps: {
  readonly integrations: TokenStore["integrations"];
  readonly clock: Clock;
  readonly maxEntries: number;
  /** How a shared lookup that does not settle is given up (single-flight.ts). */
  readonly lookups?: SingleFlightOptions | undefined;
}): IntegrationResolver {
  const { integrations } = deps;
  const resolved = createResolvedIntegrations({ maxEntries: deps.maxEntries, ttlMs: RESOLVE_TTL_MS, clock: deps.clock });
  // A lookup has no side effects, and each caller still applies its own authorization to the answer.
  const lookups = createSingleFlight<Integration>(deps.lookups);

  async function lookUp(selector: TokenSelector): Promise<Integration> {
    if (selector.integrationId) {
      const integration = await integrations.get(selector.integrationId);
      if (!integration) throw integrationNotFound(selector.integrationId);
      return integration;
    }
    const userId = selector.userId ?? "";
    const provider = selector.provider ?? "";
    const found = await integrations.findForUser(userId, provider, selector.externalAccountId || undefined);
    if (found.length === 0) {
      throw new BrokerError("not_found", `user ${userId} has no ${provider} integration; connect one with StartAuthorization`, {
        reason: "INTEGRATION_NOT_FOUND",
        metadata: { user_id: userId, provider },
      });
    }
    if (found.length > 1) {
      throw new BrokerError(
        "failed_precondition",
        `user ${userId} has ${found.length} ${provider} accounts connected; set external_account_id to choose one`,
        { reason: "AMBIGUOUS_INTEGRATION", fieldViolations: [{ field: "external_account_id", description: "required when several accounts are connected" }] },
      );
    }
    const [integration] = found;
    if (!integration) throw new BrokerError("internal", "integration lookup returned nothing");
    return integration;
  }

  const keyOf = (selector: TokenSelector) =>
    selector.integrationId
      ? `id:${selector.integrationId}`
      : `user:${selector.userId ?? ""}\u0000${selector.provider ?? ""}\u0000${selector.externalAccountId ?? ""}`;

  return {
    resolveWarm(selector, authorize) {
      const hit = resolved.get(keyOf(selector));
      if (!hit) return undefined;
      try {
        authorize?.(hit);
        checkStatus(hit);
      } catch {
        return undefined;
      }
      return hit;
    },
    async resolve(selector, authorize) {
      const key = keyOf(selector);
      const hit = resolved.get(key);
      if (hit) {
        try {
          authorize?.(hit);
        } catch (refusal) {
          // Refused no sooner than an unknown id, which costs a database read: the answer's timing
          // must not tell a caller that an integration it may not use exists and is in use here.
          // Nor may its outcome: while that read fails, both get the database's error.
          await integrations.get(hit.id);
          throw refusal;
        }
        checkStatus(hit);
        return hit;
      }
      const integration = await lookups.run(key, () => lookUp(selector));
      authorize?.(integration);
      checkStatus(integration);
      resolved.remember(key, integration);
      return integration;
    },
    forget: (integrationId) => resolved.forget(integrationId),
  };
}
