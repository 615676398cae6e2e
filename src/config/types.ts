/**
 * The validated configuration. `config/load-config.ts` builds it from `BROKER_CONFIG` (YAML) and
 * the environment, once, at start-up; nothing else reads `process.env`. Secrets arrive here
 * resolved from `${ENV}` references and are wrapped in `Secret` so they never print.
 */
import type { RateLimit } from "../domain/rate-limiter.js";

/** A secret value that renders as "[redacted]" in logs, JSON and `util.inspect`. */
export interface Secret {
  reveal(): string;
  toString(): string;
  toJSON(): string;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export type ProviderKind = "google" | "youtube" | "microsoft" | "notion" | "oidc" | "oauth2" | "sandbox";

export type ClientAuthMethod =
  /** RFC 6749 §2.3.1: id and secret form-encoded, then Basic. */
  | "client_secret_basic"
  /** Basic with the raw id and secret (Notion). */
  | "client_secret_basic_raw"
  | "client_secret_post"
  | "none";

export interface ProviderEndpoints {
  /** OIDC discovery (issuer) URL; endpoints below override what it advertises. */
  readonly issuer?: string | undefined;
  readonly authorization?: string | undefined;
  readonly token?: string | undefined;
  readonly revocation?: string | undefined;
  readonly userinfo?: string | undefined;
  /** Provider API base for account lookups (YouTube channels, Graph /me, Notion). */
  readonly api?: string | undefined;
}

export interface ProviderConfig {
  readonly id: string;
  readonly kind: ProviderKind;
  readonly displayName: string;
  readonly clientId: string | undefined;
  readonly clientSecret: Secret | undefined;
  readonly clientAuthMethod: ClientAuthMethod;
  readonly endpoints: ProviderEndpoints;
  readonly defaultScopes: readonly string[];
  readonly allowedScopes: readonly string[];
  readonly pkce: boolean;
  /** Extra query parameters for the authorization request. */
  readonly authorizationParams: Readonly<Record<string, string>>;
  /** Used when a token response has no `expires_in` (never "forever"). */
  readonly defaultAccessTokenLifetimeSeconds: number;
  /** Microsoft tenant (common, organizations, consumers or an id). */
  readonly tenant: string | undefined;
  /** Seconds for the token endpoint and other provider calls. */
  readonly timeoutMs: number;
  /** At most this many concurrent outbound calls to this provider. */
  readonly maxConcurrency: number;
}

export interface JwtIssuerConfig {
  /** Name used in logs and audit ("local" for the embedded key). */
  readonly name: string;
  /** Expected `iss`. */
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly jwksUrl: string | undefined;
  /** Static public keys (JWK JSON or PEM), when no JWKS URL. */
  readonly staticKeys: readonly string[];
  readonly algorithms: readonly string[];
  readonly clockSkewSeconds: number;
  /** Tokens whose `exp − iat` (or `exp − now` without `iat`) exceeds this are refused. */
  readonly maxTokenLifetimeSeconds: number;
  /** Which principal kind the issuer's tokens describe. */
  readonly principalKind: "user" | "service";
  /** Claim holding roles (`admin` grants the admin role, where `allowAdmin`). */
  readonly rolesClaim: string;
  /**
   * Whether this issuer may make broker admins. Off by default: a product's session issuer
   * giving its own app admins `roles: [admin]` must not make them admins of everyone's tokens.
   */
  readonly allowAdmin: boolean;
  /** Claim holding the subject (default `sub`). */
  readonly subjectClaim: string;
}

export interface ServicePolicy {
  /** Service principal subject this rule applies to ("*" for every service). */
  readonly service: string;
  readonly providers: readonly string[];
  /** Scopes the service may require in GetAccessToken; "*" allows all of a provider's allowed scopes. */
  readonly scopes: readonly string[];
  readonly actForUsers: boolean;
  /** Full method names or "Service/*"; empty means GetAccessToken + reads. */
  readonly rpcs: readonly string[];
  /** Refuse tokens whose granted scopes exceed `scopes`. */
  readonly strict: boolean;
}

/** Defined by the domain's rate limiter, which the limits are given to. */
export type { RateLimit } from "../domain/rate-limiter.js";

export interface VaultConfig {
  readonly address: string;
  readonly token: Secret | undefined;
  readonly roleId: string | undefined;
  readonly secretId: Secret | undefined;
  /** Kubernetes auth: role and the path of the service-account JWT. */
  readonly kubernetesRole: string | undefined;
  readonly kubernetesTokenPath: string;
  readonly namespace: string | undefined;
  readonly mount: string;
  readonly key: string;
  /** Create the derived key at start when missing (needs `create` on the key path). */
  readonly createKey: boolean;
  readonly timeoutMs: number;
}

/** TLS for the gRPC listener; with a client CA, callers must present a certificate it signed. */
export interface GrpcTlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  /** Client certificates signed by this CA identify services (subject CN or SPIFFE ID). */
  readonly clientCaFile: string | undefined;
}

export interface Config {
  readonly nodeEnv: string;
  readonly version: string;
  readonly grpcAddress: ListenAddress;
  /** Absent: the gRPC listener speaks plaintext h2c (inside a mesh or on loopback). */
  readonly grpcTls: GrpcTlsConfig | undefined;
  readonly httpAddress: ListenAddress;
  readonly publicUrl: URL;
  readonly dataDir: string;
  /** Absent: start the embedded PostgreSQL in `dataDir`. */
  readonly databaseUrl: Secret | undefined;
  readonly databasePoolSize: number;
  /** Bound on each database wait of a call (query, pool acquisition, audit commit). */
  readonly databaseCallTimeoutMs: number;
  /** Absent: the local keyring in `dataDir`. */
  readonly vault: VaultConfig | undefined;
  /** Permits the local keyring when NODE_ENV=production. */
  readonly allowLocalKeyringInProduction: boolean;
  readonly logLevel: string;
  readonly providers: readonly ProviderConfig[];
  readonly sandbox: { readonly enabled: boolean };
  readonly auth: {
    /** Empty: trust only the broker's own signing key in `dataDir`. */
    readonly issuers: readonly JwtIssuerConfig[];
    /** Require a bearer token for GET /metrics. */
    readonly protectMetrics: boolean;
  };
  readonly policies: readonly ServicePolicy[];
  readonly limits: {
    readonly perPrincipal: Readonly<Record<"token" | "read" | "write" | "admin", RateLimit>>;
    readonly startAuthorizationPerUser: RateLimit;
    /**
     * The largest request body either listener reads, in bytes, counted both as sent and after
     * decompression; read at start-up only (listeners are not rebuilt on reload).
     */
    readonly maxRequestBytes: number;
  };
  readonly authorization: {
    /** Allowed `return_to` prefixes (origin + path prefix). */
    readonly returnToAllowList: readonly string[];
    readonly sessionTtlSeconds: number;
  };
  readonly tokens: {
    readonly defaultMinValidForSeconds: number;
    readonly cacheMaxEntries: number;
    /** The proactive refresher acts on tokens expiring within this window. */
    readonly proactiveRefreshWindowSeconds: number;
    readonly proactiveRefreshIntervalSeconds: number;
    /** Refreshes the proactive refresher keeps in flight per replica. */
    readonly proactiveRefreshConcurrency: number;
    /** Refreshes the proactive refresher starts per second per replica at most; 0: unpaced. */
    readonly proactiveRefreshPerSecond: number;
    /** Refresh lease length; its holder renews it every third of it (heartbeat). */
    readonly leaseSeconds: number;
    /** The longest pause a provider's Retry-After can impose on its token endpoint. */
    readonly providerPauseMaxSeconds: number;
    /** The cap of the backoff after rate-limited answers without Retry-After. */
    readonly rateLimitBackoffMaxSeconds: number;
    /** Longest any call waits for a token when its own deadline is later or unset. */
    readonly maxWaitSeconds: number;
    /** How often counted repeat disclosures are written as `token.reissued` events. */
    readonly reissueFlushSeconds: number;
  };
  readonly retention: {
    readonly tombstoneDays: number;
    readonly auditDays: number;
    readonly needsReauthEraseDays: number;
    /** How long WatchIntegrations can resume from an old cursor. */
    readonly changeFeedDays: number;
  };
  readonly shutdownGraceMs: number;
  /** Absent: server faults are only logged, and `@sentry/node` is never loaded. */
  readonly sentryDsn: Secret | undefined;
  /** Sentry's `environment` tag; absent: `nodeEnv`. */
  readonly sentryEnvironment: string | undefined;
}
