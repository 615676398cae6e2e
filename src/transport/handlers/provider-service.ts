/** ProviderService: the configured providers, from configuration. Never a secret. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { ProviderConfig } from "../../config/types.js";
import type { ProviderService } from "../../gen/oauthbroker/v1/provider_service_pb.js";
import { credentialsConfigured } from "../../providers/provider-profile.js";

/** Kinds whose provider documents a revocation endpoint (providers.md). */
const REVOCABLE_KINDS: ReadonlySet<string> = new Set(["google", "youtube", "notion", "sandbox"]);

export function supportsRevocation(provider: ProviderConfig): boolean {
  return provider.endpoints.revocation !== undefined || REVOCABLE_KINDS.has(provider.kind);
}

export function createProviderServiceHandlers(deps: {
  providers: () => readonly ProviderConfig[];
  redirectUri: (providerId: string) => string;
}): ServiceImpl<typeof ProviderService> {
  return {
    listProviders() {
      return {
        providers: deps.providers().map((provider) => ({
          id: provider.id,
          displayName: provider.displayName,
          kind: provider.kind,
          defaultScopes: [...provider.defaultScopes],
          allowedScopes: [...provider.allowedScopes],
          // The rule StartAuthorization refuses by, so the page never offers a flow that cannot run.
          credentialsConfigured: credentialsConfigured(provider),
          supportsRevocation: supportsRevocation(provider),
          supportsPkce: provider.pkce,
          redirectUri: deps.redirectUri(provider.id),
        })),
      };
    },
  };
}
