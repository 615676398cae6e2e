/**
 * Ports the domain depends on, in one place. `storage/`, `crypto/` and `providers/` implement
 * them and `main.ts` wires them, so the domain imports no database, Vault or HTTP client code
 * (`npm run lint` enforces it). The authorization flow's narrow subsets are its own, in
 * authorization-ports.ts.
 */
import type { ProviderPauseNotice } from "./tokens/provider-pause.js";
import type { RefreshSentMark } from "./tokens/refresh-takeover.js";
import type { EncryptedTokenSet, ExternalAccount, Integration, IntegrationChange, IntegrationStatus, RequestContext, TokenSet } from "./types.js";

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/**
 * `clock`'s time in milliseconds since the epoch. The system clock is read without making a
 * Date: a warm GetAccessToken reads the time in five places, and the Dates were garbage.
 */
export function epochMs(clock: Clock): number {
  return clock === systemClock ? Date.now() : clock.now().getTime();
}

/** What the domain logs through (pino's logger satisfies it): structured fields, then the message. */
export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * An integration's token set as it is written: secrets already encrypted. On a refresh, a null
 * refresh token keeps the stored one (the provider did not rotate it).
 */
export interface EncryptedTokenWrite {
  readonly accessTokenCiphertext: string;
  readonly refreshTokenCiphertext: string | null;
  readonly tokenType: string;
  readonly expiresAt: Date;
  readonly scopes: readonly string[];
}

/** The outcome of taking an integration's refresh lease. */
export type LeaseResult =
  /**
   * `version` is the token set's, `tokenSet` the set itself as the lease was taken (its holder
   * needs no second read); `sent` marks a refresh request an earlier holder sent.
   */
  | { readonly acquired: true; readonly version: number; readonly tokenSet: EncryptedTokenSet; readonly expiresAt: Date; readonly sent: RefreshSentMark | undefined }
  | { readonly acquired: false; readonly holder: string; readonly expiresAt: Date }
  /** No token set to lease. */
  | { readonly acquired: false; readonly holder: undefined; readonly expiresAt: undefined };

/** A refresh lease taken for this replica, by `acquireLease` or by the proactive refresher's claim. */
export type TakenLease = Extract<LeaseResult, { readonly acquired: true }>;

/**
 * An integration the proactive refresher claimed: its lease is taken by the claim itself, and
 * `integration` is the row as that same statement read it (active when claimed).
 */
export interface ClaimedRefresh {
  readonly integrationId: string;
  readonly provider: string;
  readonly integration: Integration;
  readonly lease: TakenLease;
}

/**
 * The refresh lease on an integration's token set: one replica at a time refreshes a grant, or
 * deletes it while no refresh is in flight. Implemented by storage/token-set-repository.ts.
 */
export interface RefreshLease {
  acquireLease(integrationId: string, owner: string, ttlMs: number): Promise<LeaseResult>;
  /** `keepSentMark`: the outcome of the refresh request sent under the lease is unknown. */
  releaseLease(integrationId: string, owner: string, options?: { readonly keepSentMark?: boolean }): Promise<void>;
  /** The heartbeat; false when the lease is no longer `owner`'s. */
  renewLease(integrationId: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Records that `owner` sends the refresh token of `version` now; false when the lease is not `owner`'s. */
  markRefreshSent(integrationId: string, owner: string, version: number): Promise<boolean>;
}

export interface CipherInput {
  readonly plaintext: string;
  /** Binds the ciphertext to its row (integration or session id): swapped rows fail to decrypt. */
  readonly context: string;
}

export interface CiphertextInput {
  readonly ciphertext: string;
  readonly context: string;
}

/**
 * Encryption at rest. Implementations: Vault transit (`vault:vN:` ciphertexts) and the local
 * keyring (`local:vN:`). Failures are `BrokerError`s: `key_service_unavailable` (retry) or
 * `key_service_error` (permission, failed authentication: never retried).
 */
export interface Cipher {
  /** "vault-transit" or "local-keyring", for status and logs. */
  readonly kind: string;
  encrypt(input: CipherInput): Promise<string>;
  decrypt(input: CiphertextInput): Promise<string>;
  /** Results in input order; one failing item fails the whole call. */
  encryptBatch(inputs: readonly CipherInput[]): Promise<string[]>;
  decryptBatch(inputs: readonly CiphertextInput[]): Promise<string[]>;
  /** Re-encrypts under the latest key version without exposing plaintext to the broker when the backend allows. */
  rewrapBatch(inputs: readonly CiphertextInput[]): Promise<string[]>;
  /** Key version a ciphertext was made with (parsed from its prefix). */
  versionOf(ciphertext: string): number;
  /** The version new ciphertexts get. */
  latestVersion(): Promise<number>;
  /** Cheap reachability probe for /readyz and GetStatus. */
  check(): Promise<void>;
  close(): Promise<void>;
}

/** What a provider returned for a code exchange or a refresh. */
export interface ProviderGrant {
  readonly tokens: TokenSet;
  /** Present after a code exchange; may be present after a refresh (userinfo/id_token). */
  readonly account?: ExternalAccount | undefined;
}

export interface AuthorizationRequestInput {
  readonly state: string;
  readonly scopes: readonly string[];
  readonly redirectUri: string;
  /** PKCE verifier; absent for providers without PKCE (Notion). */
  readonly codeVerifier?: string | undefined;
  readonly nonce?: string | undefined;
  /** Asks the provider to show consent again (so it issues a refresh token). */
  readonly forceConsent?: boolean | undefined;
}

export interface CodeExchangeInput {
  /** The full callback URL the provider redirected to (code, state, iss ...). */
  readonly callbackUrl: URL;
  readonly expectedState: string;
  readonly redirectUri: string;
  readonly codeVerifier?: string | undefined;
  readonly nonce?: string | undefined;
  readonly requestedScopes: readonly string[];
  readonly signal?: AbortSignal | undefined;
}

export type RevocationResult =
  | { readonly outcome: "revoked" }
  | { readonly outcome: "not_supported" }
  | { readonly outcome: "retry_later"; readonly retryAfterMs: number };

/**
 * One configured provider, speaking its own wire dialect. Failures are `BrokerError`s:
 * `integration_needs_reauth` (invalid_grant), `provider_misconfigured` (invalid_client),
 * `provider_rate_limited`, `provider_unavailable` (5xx, timeout, network), `provider_error`.
 */
export interface ProviderClient {
  readonly id: string;
  authorizationUrl(input: AuthorizationRequestInput): Promise<URL>;
  exchangeCode(input: CodeExchangeInput): Promise<ProviderGrant>;
  refresh(refreshToken: string, options?: { signal?: AbortSignal | undefined }): Promise<ProviderGrant>;
  revoke(token: string, hint: "access_token" | "refresh_token"): Promise<RevocationResult>;
  /**
   * False: the provider never rotates refresh tokens, so a refused refresh token is a revoked
   * grant, never a rotated one lost. Absent: unknown, treated as rotating.
   */
  readonly rotatesRefreshTokens?: boolean;
  /**
   * The spelling a scope is compared in when a granted scope is matched with the requested ones:
   * providers answer in their own form (Google grants `email` as
   * `https://www.googleapis.com/auth/userinfo.email`; Microsoft names Graph permissions
   * case-insensitively, prefixed with `https://graph.microsoft.com/`). Absent: as written.
   */
  canonicalScope?(scope: string): string;
  /** Re-reads the account behind an access token (userinfo, Graph /me, channels?mine), for sync. */
  fetchAccount?(accessToken: string): Promise<ExternalAccount>;
}

/** The configured providers' clients; `undefined` for a provider without a usable client. */
export interface ProviderClients {
  get(id: string): ProviderClient | undefined;
}

/** GetIntegration's and ListIntegrations' reads (storage/integration-repository.ts). */
export interface IntegrationReader {
  get(id: string): Promise<Integration | undefined>;
  /** Keyset pages, newest first: `after` is the last integration of the previous page. */
  list(query: {
    userId?: string | undefined;
    provider?: string | undefined;
    providers?: readonly string[] | undefined;
    status?: IntegrationStatus | undefined;
    pageSize: number;
    after?: { createdAt: Date; id: string } | undefined;
  }): Promise<{ items: Integration[]; next?: { createdAt: Date; id: string } | undefined }>;
}

/** WatchIntegrations' feed of changes, kept in PostgreSQL (change-feed.ts). */
export interface ChangeFilter {
  readonly userId?: string | undefined;
  readonly provider?: string | undefined;
  readonly providers?: readonly string[] | undefined;
}

export interface ChangePage {
  readonly changes: IntegrationChange[];
  /** The reader may move its position here: every event up to it was seen or filtered out. */
  readonly scannedThrough: number;
  /** Positions up to here were purged, as of the same snapshot. */
  readonly horizon: number;
}

export interface ChangeFeedStore {
  after(query: ChangeFilter & { after: number; limit: number }): Promise<ChangePage>;
  /** The newest position (never less than the horizon). */
  latest(): Promise<number>;
  /** Positions up to here were purged by retention. */
  horizon(): Promise<number>;
  /** Calls `wake` when a change commits anywhere; returns the unsubscribe function. */
  subscribe(wake: () => void): Promise<() => void>;
}

/** DeleteIntegration's storage (integration-deletion.ts). */
export interface PendingRevocation {
  readonly integrationId: string;
  readonly userId: string;
  readonly provider: string;
  readonly tokenCiphertext: string;
  readonly hint: "access_token" | "refresh_token";
  readonly attempts: number;
  readonly createdAt: Date;
}

export interface RevocationQueue {
  claimDue(limit: number, ttlMs: number): Promise<PendingRevocation[]>;
  complete(integrationId: string): Promise<void>;
  reschedule(integrationId: string, nextAttemptAt: Date, lastError: string): Promise<void>;
}

export interface DeletionStore {
  readonly tokenSets: Pick<RefreshLease, "acquireLease" | "releaseLease">;
  readonly integrations: {
    markDeleted(
      id: string,
      reason: string,
      options: { queueRevocation: boolean; claimMs: number },
    ): Promise<{ integration: Integration; alreadyDeleted: boolean; revocation?: { tokenCiphertext: string; hint: "access_token" | "refresh_token" } | undefined } | undefined>;
  };
  readonly revocations: RevocationQueue;
}

/** SyncIntegrations' storage (integration-sync.ts). */
export interface SyncCursor {
  readonly createdAt: Date;
  readonly id: string;
}

export interface SyncStore {
  list(query: {
    userId?: string | undefined;
    provider?: string | undefined;
    providers?: readonly string[] | undefined;
    status: "active";
    pageSize: number;
    after?: SyncCursor | undefined;
  }): Promise<{ items: Integration[]; next?: SyncCursor | undefined }>;
  claimForSync(id: string, ttlMs: number): Promise<boolean>;
  finishSync(id: string): Promise<void>;
  updateAccount(id: string, account: ExternalAccount, scopes: readonly string[]): Promise<boolean>;
  markNeedsReauth(id: string, reason: string): Promise<void>;
}

export type AuditOutcome = "success" | "failure" | "denied";

/** One audit record. Never carries a token, secret or verifier. */
export interface AuditEventInput {
  /** Dotted verb, e.g. `token.issued`, `authorization.started`, `integration.deleted`. */
  readonly action: string;
  readonly outcome: AuditOutcome;
  /** Error code or denial reason; empty on success. */
  readonly reason?: string | undefined;
  readonly caller?: string | undefined;
  /** "user", "service", "admin" or "system". */
  readonly callerKind?: string | undefined;
  readonly userId?: string | undefined;
  readonly integrationId?: string | undefined;
  readonly provider?: string | undefined;
  readonly requestId?: string | undefined;
  readonly peer?: string | undefined;
  readonly scopes?: readonly string[] | undefined;
  readonly details?: Readonly<Record<string, string>> | undefined;
}

/** Who asked, for an audit event: the call's principal, request id and peer. */
export function auditCaller(ctx: RequestContext): { caller: string; callerKind: string; requestId: string; peer: string } {
  return { caller: ctx.principal.subject, callerKind: ctx.principal.kind, requestId: ctx.requestId, peer: ctx.peer };
}

/** What an audit event is about: the integration, its user and provider. */
export function auditSubject(integration: Pick<Integration, "id" | "userId" | "provider">): { integrationId: string; userId: string; provider: string } {
  return { integrationId: integration.id, userId: integration.userId, provider: integration.provider };
}

/**
 * The tamper-evident audit trail. `record` resolves once the event is durably written; an
 * operation whose record cannot be written must fail rather than go unrecorded.
 */
export interface AuditLog {
  record(event: AuditEventInput): Promise<void>;
}

/** Which audit events to read; every field is optional and empty strings mean "any". */
export interface AuditEventFilter {
  /** Events at or after this time. */
  readonly startTime?: Date | undefined;
  /** Events before this time. */
  readonly endTime?: Date | undefined;
  readonly userId?: string | undefined;
  readonly caller?: string | undefined;
  readonly integrationId?: string | undefined;
  readonly action?: string | undefined;
  readonly outcome?: string | undefined;
}

/** One event as the trail holds it, with its place in the hash chain. */
export interface RecordedAuditEvent {
  /** Gap-free and increasing: the chain order, and the keyset pages continue after it. */
  readonly sequence: bigint;
  readonly time: Date;
  readonly action: string;
  readonly outcome: string;
  readonly reason: string;
  readonly caller: string;
  readonly callerKind: string;
  readonly userId: string;
  readonly integrationId: string;
  readonly provider: string;
  readonly requestId: string;
  readonly peer: string;
  readonly scopes: readonly string[];
  readonly details: Readonly<Record<string, string>>;
  readonly hash: string;
  readonly previousHash: string;
}

/** Reading the audit trail (storage/audit-query.ts), for AuditService.ListAuditEvents. */
export interface AuditTrailReader {
  /** Up to `limit` events after `afterSequence` (0n: from the oldest) that match `filter`, oldest first. */
  list(filter: AuditEventFilter, page: { readonly afterSequence: bigint; readonly limit: number }): Promise<RecordedAuditEvent[]>;
}

/** A token set as stored: ciphertexts only (`Cipher`, bound to the integration id). */
/** What the token lifecycle needs from storage (the postgres.js repositories satisfy it). */
export interface TokenStore {
  readonly integrations: {
    get(id: string): Promise<Integration | undefined>;
    findForUser(userId: string, provider: string, externalAccountId?: string): Promise<readonly Integration[]>;
    markNeedsReauth(id: string, reason: string): Promise<void>;
    recordRefreshFailure(id: string, reason: string, nextAttemptAt: Date): Promise<void>;
    touchLastUsed(id: string, at: Date): Promise<void>;
  };
  readonly tokenSets: RefreshLease & {
    get(integrationId: string): Promise<EncryptedTokenSet | undefined>;
    /**
     * The new version, or undefined when the stored one is no longer `expectedVersion`. A landed
     * write is announced on the change feed by the write itself, and gives back the refresh lease
     * of `releaseLeaseOf` when that owner holds it.
     */
    writeIfVersion(integrationId: string, expectedVersion: number, tokens: EncryptedTokenWrite, options?: { readonly releaseLeaseOf?: string }): Promise<number | undefined>;
  };
}

/** Provider pauses shared across replicas (LISTEN/NOTIFY). */
export interface ProviderPauseFeed {
  publish(notice: ProviderPauseNotice): Promise<void>;
  subscribe(listener: (notice: ProviderPauseNotice) => void): () => void;
}

/** Cross-replica change feed of token sets (LISTEN/NOTIFY). */
export interface TokenChangeFeed {
  publish(change: { integrationId: string; version: number }): Promise<void>;
  subscribe(listener: (change: { integrationId: string; version: number }) => void): () => void;
}

