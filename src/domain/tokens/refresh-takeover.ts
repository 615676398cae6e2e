/**
 * What a replica knows when it takes over a refresh lease whose holder died after sending its
 * refresh request: the provider may have processed that request and rotated the refresh token,
 * and the rotated one died with the holder. The stored refresh token is then tried once only
 * (some providers forgive reuse for a short window; providers that do not rotate never mind),
 * and a refusal means the grant is lost: the integration needs re-authorization, with the reason
 * `ROTATED_TOKEN_LOST` and an ALERT, never a silent second replay (RFC 9700 §4.14.2: a rotating
 * provider treats a replay as theft and revokes the whole grant).
 */
import { BrokerError } from "../errors.js";
import type { Integration } from "../types.js";

/** A refresh request some lease holder sent with the refresh token of token-set `version`. */
export interface RefreshSentMark {
  readonly version: number;
  readonly by: string;
  readonly at: Date;
}

/** The `status_reason` an integration gets, and the reason its callers see. */
export const ROTATED_TOKEN_LOST = "rotated_token_lost";

/**
 * The mark that makes the refresh token of `currentVersion` possibly spent, if any. A mark for an
 * older version is obsolete: the answer to that request was stored.
 */
export function possiblySpent(mark: RefreshSentMark | undefined, currentVersion: number): RefreshSentMark | undefined {
  return mark !== undefined && mark.version === currentVersion ? mark : undefined;
}

/** The refusal of a possibly spent refresh token, as callers get it. */
export function rotatedTokenLost(integration: Integration, refusal: BrokerError): BrokerError {
  return new BrokerError(
    "integration_needs_reauth",
    `the ${integration.provider} refresh token was rotated by a refresh whose answer was lost with the replica that sent it; the user must connect the account again`,
    {
      cause: refusal,
      reason: "ROTATED_TOKEN_LOST",
      metadata: { integration_id: integration.id, provider: integration.provider, error: ROTATED_TOKEN_LOST },
    },
  );
}
