/**
 * The configured providers by id, each with its `ProviderClient` and its own redirect URI
 * (`/oauth/callback/<id>`): a distinct redirect URI per provider is the mix-up defence for
 * providers that do not send RFC 9207 `iss` (providers.md, oauth-client-security.md §3).
 */
import type { ProviderConfig } from "../config/types.js";
import type { ProviderClient } from "../domain/ports.js";
import type { ProviderProfile } from "../domain/provider-profile.js";
import { createProviderClient } from "./create-provider-client.js";
import { providerProfile } from "./provider-profile.js";
import type { ProviderClientDeps } from "./provider-template.js";
import { sandboxProviderConfig, type SandboxProvider } from "./sandbox-provider.js";

export interface ProviderRegistry {
  get(id: string): ProviderClient | undefined;
  /** The configurations as given (sandbox credentials are not filled in). */
  list(): ProviderConfig[];
  /** What the domain sees of each provider, in the same order. */
  profiles(): ProviderProfile[];
  redirectUri(id: string): string;
}

export interface ProviderRegistryDeps extends ProviderClientDeps {
  /** The broker's external base URL. */
  readonly publicUrl: URL;
  /** The running sandbox, whose issuer and credentials complete `sandbox` providers. */
  readonly sandbox?: Pick<SandboxProvider, "issuer" | "clientId" | "clientSecret"> | undefined;
}

/** `${publicUrl}/oauth/callback/<id>`, keeping any path the public URL has. */
export function providerRedirectUri(publicUrl: URL, id: string): string {
  const base = publicUrl.href.endsWith("/") ? publicUrl.href : `${publicUrl.href}/`;
  return new URL(`oauth/callback/${encodeURIComponent(id)}`, base).href;
}

export async function createProviderRegistry(
  configs: readonly ProviderConfig[],
  deps: ProviderRegistryDeps,
): Promise<ProviderRegistry> {
  const clients = new Map<string, ProviderClient>();
  for (const config of configs) {
    const effective = config.kind === "sandbox" && deps.sandbox !== undefined ? sandboxProviderConfig(config, deps.sandbox) : config;
    if (effective.clientId === undefined) {
      // Listed (ListProviders says credentials are missing) but not usable until configured.
      deps.logger.warn({ provider: config.id }, "provider has no client credentials; its flows answer FAILED_PRECONDITION");
      continue;
    }
    clients.set(config.id, await createProviderClient(effective, deps));
  }
  const profiles = configs.map(providerProfile);
  return {
    get: (id) => clients.get(id),
    list: () => [...configs],
    profiles: () => [...profiles],
    redirectUri: (id) => providerRedirectUri(deps.publicUrl, id),
  };
}
