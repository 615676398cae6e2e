/**
 * Builds the `ProviderClient` for one configured provider from its template. No network I/O
 * happens here: OpenID metadata is discovered on first use, so the broker starts even when a
 * provider is unreachable. Missing credentials fail now, as `provider_misconfigured`.
 */
import type { ProviderConfig } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import type { ProviderClient } from "../domain/ports.js";
import { oauth2Template } from "./generic-oauth2.js";
import { oidcTemplate } from "./generic-oidc.js";
import { googleTemplate } from "./google.js";
import { microsoftTemplate } from "./microsoft.js";
import { createNotionProviderClient } from "./notion.js";
import { createOpenIdProviderClient } from "./openid-provider-client.js";
import type { ProviderClientDeps } from "./provider-template.js";
import { youtubeTemplate } from "./youtube.js";

export type { ProviderClientDeps } from "./provider-template.js";

export async function createProviderClient(config: ProviderConfig, deps: ProviderClientDeps): Promise<ProviderClient> {
  switch (config.kind) {
    case "google":
      return createOpenIdProviderClient(config, googleTemplate(config), deps, { discovery: true });
    case "youtube":
      return createOpenIdProviderClient(config, youtubeTemplate(config), deps, { discovery: true });
    case "microsoft":
      return createOpenIdProviderClient(config, microsoftTemplate(config), deps, { discovery: true });
    case "notion":
      return createNotionProviderClient(config, deps);
    case "oidc":
      return createOpenIdProviderClient(config, oidcTemplate(config), deps, { discovery: config.endpoints.issuer !== undefined });
    case "oauth2":
      return createOpenIdProviderClient(config, oauth2Template(config), deps, { discovery: false });
    case "sandbox": {
      const issuer = config.endpoints.issuer;
      if (issuer === undefined) {
        throw new BrokerError("provider_misconfigured", `sandbox provider "${config.id}" has no issuer: the sandbox is not running`, {
          reason: "SANDBOX_NOT_RUNNING",
          metadata: { provider: config.id },
        });
      }
      // The sandbox is mounted on the broker itself, which may be served over plain HTTP.
      return createOpenIdProviderClient(config, oidcTemplate(config), deps, {
        discovery: true,
        insecureHosts: [new URL(issuer).host],
      });
    }
  }
}
