/** What makes an integration unable to answer a token request, as the errors callers act on. */
import { BrokerError } from "./errors.js";
import { ROTATED_TOKEN_LOST } from "./refresh-takeover.js";
import type { Integration } from "./types.js";

/**
 * Deleted → NOT_FOUND; NEEDS_REAUTH → FAILED_PRECONDITION `INTEGRATION_NEEDS_REAUTH`, or
 * `ROTATED_TOKEN_LOST` when the grant was lost with a replica that died mid-refresh.
 */
export function checkStatus(integration: Integration): void {
  if (integration.status === "deleted") {
    throw new BrokerError("not_found", `integration ${integration.id} was deleted`, { metadata: { integration_id: integration.id } });
  }
  if (integration.status === "needs_reauth") {
    throw new BrokerError(
      "integration_needs_reauth",
      `the user must connect their ${integration.provider} account again (the provider refused the stored grant)`,
      {
        reason: integration.statusReason === ROTATED_TOKEN_LOST ? "ROTATED_TOKEN_LOST" : "INTEGRATION_NEEDS_REAUTH",
        metadata: { integration_id: integration.id, provider: integration.provider, cause: integration.statusReason },
      },
    );
  }
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
