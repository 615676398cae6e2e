/**
 * Provider configurations for tests against the peers, and a logger whose output the test can
 * search for leaked secrets.
 */
import { inspect } from "node:util";
import type { ProviderConfig, Secret } from "../../../src/config/types.js";
import { createLogger, type Logger } from "../../../src/observability/logger.js";

export function testSecret(value: string): Secret {
  return {
    reveal: () => value,
    toString: () => "[redacted]",
    toJSON: () => "[redacted]",
    [inspect.custom]: () => "[redacted]",
  } as Secret;
}

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
    clientSecret: clientSecret === undefined ? undefined : testSecret(clientSecret),
  };
}

/** A logger that keeps every line it writes. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ level: "debug", destination: { write: (line: string) => void lines.push(line) } });
  return { logger, lines };
}
