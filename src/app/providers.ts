/**
 * Wiring of the OAuth providers: the built-in sandbox provider (when configured) and the registry
 * of provider clients, whose HTTP calls go through the outbound transport and are counted and timed.
 */
import type { ProviderConfig } from "../config/types.js";
import type { Metrics } from "../observability/metrics.js";
import { observingFetch } from "../providers/provider-http.js";
import { createOutboundTransport, type OutboundTransport } from "../http/outbound-transport.js";
import { createProviderRegistry, providerRedirectUri, type ProviderRegistry } from "../providers/provider-registry.js";
import { createSandboxProvider, sandboxProviderConfig, type SandboxProvider } from "../providers/sandbox-provider.js";
import type { Wiring } from "./wiring.js";

export interface Providers {
  readonly sandbox: SandboxProvider | undefined;
  /** The configured providers, the sandbox's with the issuer and client it was started with. */
  readonly configs: readonly ProviderConfig[];
  readonly registry: ProviderRegistry;
}

async function startSandbox({ config, logger, closers }: Wiring): Promise<SandboxProvider | undefined> {
  const sandboxSettings = config.providers.find((p) => p.kind === "sandbox");
  const sandbox = sandboxSettings
    ? await createSandboxProvider({
        publicUrl: config.publicUrl,
        pathPrefix: "/sandbox",
        redirectUri: providerRedirectUri(config.publicUrl, sandboxSettings.id),
        accessTokenTtlSeconds: sandboxSettings.defaultAccessTokenLifetimeSeconds,
        logger,
      })
    : undefined;
  if (sandbox) closers.add("sandbox provider", () => sandbox.close());
  return sandbox;
}

/**
 * The one HTTP client for providers and Vault. Opened before either and closed after both
 * (closers run last-added first), so no call of theirs outlives its connections.
 */
export function openOutboundTransport({ closers }: Wiring): OutboundTransport {
  const transport = createOutboundTransport();
  closers.add("outbound connections", () => transport.close());
  return transport;
}

export async function openProviders(wiring: Wiring, metrics: Metrics, transport: OutboundTransport): Promise<Providers> {
  const { config, logger, clock } = wiring;
  const sandbox = await startSandbox(wiring);
  const configs = config.providers.map((p) => (p.kind === "sandbox" && sandbox ? sandboxProviderConfig(p, sandbox) : p));
  const registry = await createProviderRegistry(configs, {
    logger,
    clock,
    publicUrl: config.publicUrl,
    fetch: observingFetch((call) => {
      metrics.providerHttpRequests.inc({ provider: call.provider, endpoint: call.endpoint, status: call.status });
      if (call.seconds !== undefined) {
        metrics.providerHttpRequestSeconds.observe({ provider: call.provider, endpoint: call.endpoint }, call.seconds);
      }
    }, transport.fetch),
  });
  return { sandbox, configs, registry };
}
