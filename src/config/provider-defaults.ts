/**
 * Per-kind defaults for provider settings that are configuration rather than protocol (scopes
 * users may ask for, client authentication, PKCE, lifetimes), from the providers' documentation
 * (see shared/reference/providers.md). Endpoints live with the templates in `providers/`.
 */
import type { ClientAuthMethod, ProviderKind } from "./types.js";

export interface ProviderDefaults {
  readonly displayName: string;
  readonly defaultScopes: readonly string[];
  readonly allowedScopes: readonly string[];
  readonly pkce: boolean;
  readonly clientAuthMethod: ClientAuthMethod;
  readonly defaultAccessTokenLifetimeSeconds: number;
  /** Microsoft only: the tenant segment of the endpoints. */
  readonly tenant?: string;
}

/** Bounds for every provider's outbound calls, whatever its kind. */
export const PROVIDER_TIMEOUT_MS = 10_000;
export const PROVIDER_MAX_CONCURRENCY = 16;

const GOOGLE_API = "https://www.googleapis.com/auth";
const YOUTUBE_SCOPES = [`${GOOGLE_API}/youtube`, `${GOOGLE_API}/youtube.readonly`, `${GOOGLE_API}/youtube.upload`, `${GOOGLE_API}/youtube.force-ssl`];

export const PROVIDER_DEFAULTS: Readonly<Record<ProviderKind, ProviderDefaults>> = {
  google: {
    displayName: "Google",
    defaultScopes: ["openid", "email", "profile"],
    allowedScopes: ["openid", "email", "profile", `${GOOGLE_API}/calendar.readonly`, `${GOOGLE_API}/drive.readonly`, `${GOOGLE_API}/gmail.readonly`],
    pkce: true,
    clientAuthMethod: "client_secret_post",
    defaultAccessTokenLifetimeSeconds: 3600,
  },
  youtube: {
    displayName: "YouTube",
    // The channel (not an OIDC `sub`) identifies the account, so `openid` is not needed.
    defaultScopes: [`${GOOGLE_API}/youtube.readonly`],
    allowedScopes: YOUTUBE_SCOPES,
    pkce: true,
    clientAuthMethod: "client_secret_post",
    defaultAccessTokenLifetimeSeconds: 3600,
  },
  microsoft: {
    displayName: "Microsoft",
    defaultScopes: ["openid", "profile", "email", "offline_access", "User.Read"],
    allowedScopes: ["openid", "profile", "email", "offline_access", "User.Read", "Mail.Read", "Calendars.Read", "Files.Read"],
    pkce: true,
    clientAuthMethod: "client_secret_post",
    defaultAccessTokenLifetimeSeconds: 3600,
    tenant: "common",
  },
  notion: {
    displayName: "Notion",
    defaultScopes: [],
    allowedScopes: [],
    // Notion does not document PKCE; `state` is the CSRF defence there.
    pkce: false,
    clientAuthMethod: "client_secret_basic_raw",
    // Notion documents no lifetime: assume an hour rather than "forever".
    defaultAccessTokenLifetimeSeconds: 3600,
  },
  // Any other server: needs endpoints.issuer (discovery) or explicit endpoints.
  oidc: {
    displayName: "OpenID Connect",
    defaultScopes: ["openid"],
    allowedScopes: ["openid", "profile", "email", "offline_access"],
    pkce: true,
    clientAuthMethod: "client_secret_basic",
    defaultAccessTokenLifetimeSeconds: 3600,
  },
  oauth2: {
    displayName: "OAuth 2.0",
    defaultScopes: [],
    allowedScopes: [],
    pkce: true,
    clientAuthMethod: "client_secret_basic",
    defaultAccessTokenLifetimeSeconds: 3600,
  },
  // The broker's own test authorization server, for trying the embedded default out.
  sandbox: {
    displayName: "Sandbox (local test provider)",
    defaultScopes: ["openid", "profile", "offline_access"],
    allowedScopes: ["openid", "profile", "email", "offline_access", "sandbox.read", "sandbox.write"],
    pkce: true,
    clientAuthMethod: "client_secret_basic",
    defaultAccessTokenLifetimeSeconds: 300,
  },
};

export const PROVIDER_KINDS: readonly ProviderKind[] = Object.keys(PROVIDER_DEFAULTS) as ProviderKind[];

export function isProviderKind(value: string): value is ProviderKind {
  return (PROVIDER_KINDS as readonly string[]).includes(value);
}
