/**
 * The three providers an authorization-flow test connects accounts at, each played by its peer
 * and configured in the broker as the provider's defaults have it: Google (client_secret_basic),
 * Microsoft (client_secret_post, Graph API) and Notion (no PKCE, raw basic credentials).
 */
import type { ProviderConfig } from "../../../src/config/types.js";
import { startNotionPeer, type NotionPeer } from "./notion-peer.js";
import { startOidcPeer, type OidcPeer } from "./oidc-peer.js";
import { testProviderConfig } from "./provider-config.js";

export interface FlowPeerSecrets {
  readonly google: string;
  readonly microsoft: string;
  readonly notion: string;
}

export interface FlowPeers {
  readonly google: OidcPeer;
  readonly microsoft: OidcPeer;
  readonly notion: NotionPeer;
  /** The broker's configuration of the three, ids `google`, `microsoft` and `notion`. */
  readonly configs: ProviderConfig[];
  close(): Promise<void>;
}

/** `redirect(id)`: the broker's callback URL for provider `id`, registered at its peer. */
export async function startFlowPeers(secrets: FlowPeerSecrets, redirect: (id: "google" | "microsoft" | "notion") => string): Promise<FlowPeers> {
  const google = await startOidcPeer({
    flavor: "google",
    clients: [{ client_id: "broker-client", client_secret: secrets.google, redirect_uris: [redirect("google")], token_endpoint_auth_method: "client_secret_basic" }],
  });
  const microsoft = await startOidcPeer({
    flavor: "microsoft",
    clients: [{ client_id: "broker-client", client_secret: secrets.microsoft, redirect_uris: [redirect("microsoft")], token_endpoint_auth_method: "client_secret_post" }],
  });
  const notion = await startNotionPeer({ clients: [{ client_id: "broker-client", client_secret: secrets.notion, redirect_uris: [redirect("notion")] }] });
  const configs = [
    testProviderConfig({
      id: "google",
      kind: "google",
      clientSecret: secrets.google,
      endpoints: { issuer: google.issuer },
      defaultScopes: ["email"],
      allowedScopes: ["calendar.read", "calendar.write"],
    }),
    microsoftFlowConfig("microsoft", microsoft, secrets.microsoft),
    testProviderConfig({
      id: "notion",
      kind: "notion",
      clientSecret: secrets.notion,
      clientAuthMethod: "client_secret_basic_raw",
      pkce: false,
      endpoints: { api: notion.apiBase },
    }),
  ];
  return {
    google,
    microsoft,
    notion,
    configs,
    close: async () => void (await Promise.all([google.close(), microsoft.close(), notion.close()])),
  };
}

/** The broker's configuration of a Microsoft-like peer under `id`. */
export function microsoftFlowConfig(id: string, peer: OidcPeer, secret: string): ProviderConfig {
  return testProviderConfig({
    id,
    kind: "microsoft",
    clientSecret: secret,
    clientAuthMethod: "client_secret_post",
    endpoints: { issuer: peer.issuer, api: peer.apiBase },
    defaultScopes: ["User.Read"],
    allowedScopes: ["Mail.Read"],
  });
}
