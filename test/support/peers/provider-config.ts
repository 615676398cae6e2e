/**
 * Provider configurations for tests against the peers.
 */
import { createSecret } from "../../../src/config/secret.js";
import type { ProviderConfig } from "../../../src/config/types.js";

export function testProviderConfig(
  overrides: Partial<Omit<ProviderConfig, "clientSecret">> & Pick<ProviderConfig, "id" | "kind"> & { clientSecret?: string },
): ProviderConfig {
  const { clientSecret, ...rest } = overrides;
  return {
    displayName: overrides.id,
    clientId: "broker-client",
    clientAuthMethod: "client_secret_basic",
    endpoints: {},
    defaultScopes: [],
    allowedScopes: [],
    pkce: true,
    authorizationParams: {},
    defaultAccessTokenLifetimeSeconds: 3600,
    tenant: undefined,
    timeoutMs: 2_000,
    maxConcurrency: 4,
    ...rest,
    clientSecret: clientSecret === undefined ? undefined : createSecret(clientSecret),
  };
}
