/**
 * The Microsoft-like peer most token tests need: refresh tokens rotated on every use (so a lost
 * or replayed one shows), with the broker's provider client already pointed at it.
 */
import type { ProviderClient } from "../../../src/domain/ports.js";
import type { Logger } from "../../../src/observability/logger.js";
import { createProviderClient } from "../../../src/providers/create-provider-client.js";
import { startOidcPeer, type OidcPeer } from "./oidc-peer.js";
import { testProviderConfig } from "./provider-config.js";

export async function startMicrosoftPeer(options: {
  readonly secret: string;
  readonly redirectUri: string;
  readonly logger: Logger;
  readonly accessTokenTtlSeconds?: number;
  readonly rotateRefreshTokens?: boolean;
  readonly refreshReuseWindowMs?: number;
}): Promise<{ peer: OidcPeer; client: ProviderClient }> {
  const peer = await startOidcPeer({
    flavor: "microsoft",
    accessTokenTtlSeconds: options.accessTokenTtlSeconds ?? 3600,
    rotateRefreshTokens: options.rotateRefreshTokens ?? true,
    ...(options.refreshReuseWindowMs === undefined ? {} : { refreshReuseWindowMs: options.refreshReuseWindowMs }),
    clients: [
      { client_id: "broker-client", client_secret: options.secret, redirect_uris: [options.redirectUri], token_endpoint_auth_method: "client_secret_post" },
    ],
  });
  const client = await createProviderClient(
    testProviderConfig({
      id: "microsoft",
      kind: "microsoft",
      clientSecret: options.secret,
      clientAuthMethod: "client_secret_post",
      tenant: "organizations",
      timeoutMs: 2_000,
      endpoints: { issuer: peer.issuer, api: peer.apiBase },
    }),
    { logger: options.logger },
  );
  return { peer, client };
}

/**
 * The broker.yaml entry of a provider this peer plays, as the broker is configured for it; the
 * client secret comes from the broker's MS_SECRET variable. `extra` lines go into the entry.
 */
export function microsoftPeerProviderYaml(id: string, peer: OidcPeer, extra: readonly string[] = []): string[] {
  return [
    `  ${id}:`,
    "    kind: microsoft",
    "    clientId: broker-client",
    "    clientSecret: ${MS_SECRET}",
    "    clientAuthMethod: client_secret_post",
    "    tenant: organizations",
    ...extra.map((line) => `    ${line}`),
    `    endpoints: { issuer: '${peer.issuer}', api: '${peer.apiBase}' }`,
  ];
}
