/** Domain types. Storage maps its `XRow`s to these at its edge; transport maps them to proto. */

export type IntegrationStatus = "active" | "needs_reauth" | "deleted";

export interface ExternalAccount {
  /** Stable id at the provider (OIDC `sub`, Microsoft `oid`, YouTube channel id, Notion bot id). */
  readonly id: string;
  readonly name: string;
  /** Non-secret provider-specific details (tenant id, workspace id, e-mail, ...). */
  readonly attributes: Readonly<Record<string, string>>;
}

export interface Integration {
  readonly id: string;
  readonly userId: string;
  readonly provider: string;
  readonly externalAccount: ExternalAccount;
  readonly grantedScopes: readonly string[];
  readonly status: IntegrationStatus;
  readonly statusReason: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly lastRefreshedAt: Date | null;
  readonly lastUsedAt: Date | null;
  readonly accessTokenExpiresAt: Date | null;
  readonly refreshFailureCount: number;
  readonly hasRefreshToken: boolean;
}

/** Plaintext tokens: exist only in memory, never logged, never stored as such. */
export interface TokenSet {
  readonly accessToken: string;
  readonly tokenType: string;
  readonly expiresAt: Date;
  /** Absent when the provider issued none (or, on refresh, did not rotate it). */
  readonly refreshToken?: string | undefined;
  /** Scopes granted, as read from the token response. */
  readonly scopes: readonly string[];
}

/** A token set as it rests in the database: each secret is a Cipher ciphertext. */
export interface EncryptedTokenSet {
  readonly accessTokenCiphertext: string;
  readonly refreshTokenCiphertext: string | null;
  readonly tokenType: string;
  readonly expiresAt: Date;
  readonly scopes: readonly string[];
  /** Incremented by every token write; writes are conditional on the version read. */
  readonly version: number;
}

export interface AuthorizationSession {
  readonly id: string;
  readonly userId: string;
  readonly provider: string;
  readonly requestedScopes: readonly string[];
  readonly returnTo: string;
  /** Encrypted with the session id as context. */
  readonly codeVerifierCiphertext: string | null;
  readonly nonce: string | null;
  readonly createdAt: Date;
  readonly expiresAt: Date;
}

export type PrincipalKind = "user" | "service" | "admin";

/** The authenticated caller of an RPC. */
export interface Principal {
  readonly kind: PrincipalKind;
  /** `sub` of the credential (user id, service name). */
  readonly subject: string;
  /** Configured issuer name (or "local") that vouched for it. */
  readonly issuer: string;
}

/** Who asks, and for which request: passed from the transport edge into domain operations. */
export interface RequestContext {
  readonly principal: Principal;
  readonly requestId: string;
  readonly peer: string;
  /** Aborted when the caller goes away or its deadline passes. */
  readonly signal?: AbortSignal | undefined;
  /** Absolute deadline in ms since the epoch, when the caller set one. */
  readonly deadline?: number | undefined;
}

/** What happened to an integration, as WatchIntegrations reports it. */
export type IntegrationChangeType =
  | "created"
  | "refreshed"
  | "refresh_failed"
  | "needs_reauth"
  | "scopes_changed"
  | "deleted"
  | "reauthorized";

export interface IntegrationChange {
  /** Position of this change in the feed; resuming after it yields the next one. */
  readonly cursor: number;
  readonly type: IntegrationChangeType;
  readonly time: Date;
  /** The integration as it is when the change is read (never a token). */
  readonly integration: Integration;
}
