/**
 * Sending the refresh request under the lease: the lease is marked "sent" first, and what the
 * provider did with the request decides whether that mark outlives this holder
 * (refresh-takeover.ts). A refresh token an earlier holder may already have spent is tried once,
 * and a refusal is `ROTATED_TOKEN_LOST` with an ALERT naming that holder.
 */
import { isBrokerError } from "../errors.js";
import type { ProviderGrant, Logger } from "../ports.js";
import type { Integration } from "../types.js";
import { NOT_SENT_REASONS, type ProviderCalls } from "./provider-calls.js";
import type { HeldLease } from "./refresh-lease.js";
import { mayHaveBeenProcessed, possiblySpent, rotatedTokenLost, rotatedTokenLostAlert } from "./refresh-takeover.js";

export async function sendRefresh(
  deps: { readonly provider: ProviderCalls; readonly logger: Logger },
  integration: Integration,
  refreshToken: string,
  version: number,
  lease: HeldLease,
  deadline: number,
): Promise<ProviderGrant> {
  const { logger } = deps;
  const spent = possiblySpent(lease.inheritedMark, version);
  await lease.markSent(version);
  if (spent) {
    logger.warn(
      { integrationId: integration.id, provider: integration.provider, sentBy: spent.by, sentAt: spent.at },
      "taking over a refresh whose request was sent by another lease holder without a recorded answer: the stored refresh token is tried once",
    );
  }
  try {
    const grant = await deps.provider.refresh(integration, refreshToken, deadline, spent ? 1 : undefined);
    lease.keepSentMark(false);
    return grant;
  } catch (error) {
    const reason = isBrokerError(error) ? error.reason : "";
    const refused = isBrokerError(error, "integration_needs_reauth");
    // An inherited mark stands until the provider accepts or refuses the token: a 5xx or a 429
    // says nothing about the earlier request.
    if (mayHaveBeenProcessed(error) || (spent !== undefined && !refused)) lease.keepSentMark(true);
    // Refused before sending (paused, circuit open): what was known before still holds.
    else if (!NOT_SENT_REASONS.has(reason) && !(isBrokerError(error, "provider_rate_limited") && error.metadata["paused"] === "true")) lease.keepSentMark(false);
    // A provider that never rotates refused a revoked grant, not a lost rotation.
    if (!spent || !refused || !deps.provider.rotatesRefreshTokens(integration.provider)) throw error;
    logger.error(
      { integrationId: integration.id, provider: integration.provider, lostWith: spent.by, sentAt: spent.at, providerError: error.metadata["error"] },
      rotatedTokenLostAlert(integration, spent),
    );
    throw rotatedTokenLost(integration, error);
  }
}
