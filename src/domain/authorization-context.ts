/**
 * What every step of the authorization flow shares: the clock, the provider lookups that fail
 * with a clear error, the audit record, and the cache notification after a reconnect.
 */
import { BrokerError, invalidArgument } from "./errors.js";
import { systemClock, type AuditEventInput, type Clock, type ProviderClient } from "./ports.js";
import type { ProviderProfile } from "./provider-profile.js";
import type { AuthorizationServiceDeps } from "./authorization-types.js";

export const DEFAULT_EXCHANGE_TIMEOUT_MS = 10_000;

export interface FlowContext {
  readonly deps: AuthorizationServiceDeps;
  readonly clock: Clock;
  readonly exchangeTimeoutMs: number;
  /** The configured provider, or `invalid_argument` naming the configured ones. */
  provider(id: string): ProviderProfile;
  /** The provider's client, or `failed_precondition` when its credentials are not configured. */
  usableClient(provider: ProviderProfile): ProviderClient;
  record(event: AuditEventInput): Promise<void>;
  /** Failure records must not hide the failure they describe: a failed write is dropped. */
  recordFailure(event: AuditEventInput): Promise<void>;
  notifyChanged(integrationId: string): void;
}

export function createFlowContext(deps: AuthorizationServiceDeps): FlowContext {
  function provider(id: string): ProviderProfile {
    const providers = deps.providers.list();
    const profile = providers.find((p) => p.id === id);
    if (profile !== undefined) return profile;
    const known = providers.map((p) => p.id).join(", ") || "(none)";
    throw invalidArgument("provider", `${id === "" ? "required" : `unknown provider "${id}"`}; configured providers: ${known}`);
  }

  function usableClient(profile: ProviderProfile): ProviderClient {
    const client = deps.providers.client(profile.id);
    if (client === undefined || !profile.credentialsConfigured) {
      throw new BrokerError(
        "failed_precondition",
        `provider "${profile.id}" has no client credentials configured; set its clientId and clientSecret in BROKER_CONFIG`,
        { reason: "PROVIDER_NOT_CONFIGURED", metadata: { provider: profile.id } },
      );
    }
    return client;
  }

  async function recordFailure(event: AuditEventInput): Promise<void> {
    try {
      await deps.audit.record(event);
    } catch {
      // The flow already failed; the caller reports that failure.
    }
  }

  function notifyChanged(integrationId: string): void {
    try {
      deps.onIntegrationChanged?.(integrationId);
    } catch {
      // A cache that cannot be told expires on its own; the stored grant is already correct.
    }
  }

  return {
    deps,
    clock: deps.clock ?? systemClock,
    exchangeTimeoutMs: deps.exchangeTimeoutMs ?? DEFAULT_EXCHANGE_TIMEOUT_MS,
    provider,
    usableClient,
    async record(event) {
      await deps.audit.record(event);
    },
    recordFailure,
    notifyChanged,
  };
}
