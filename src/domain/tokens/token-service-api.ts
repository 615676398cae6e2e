/**
 * The token service's contract: what it needs (ports, settings, hooks) and what it offers
 * (token-service.ts implements it).
 */
import type { AuditLog, Cipher, ClaimedRefresh, Clock, ProviderClient, ProviderPauseFeed, TokenChangeFeed, Logger, TokenStore } from "../ports.js";
import type { DatabaseOutcomes } from "../database-bound.js";
import type { Integration, Principal, RequestContext, TokenSet } from "../types.js";
import type { CircuitState } from "./circuit-breaker.js";
import type { TokenSelector } from "./integration-resolution.js";

export interface TokenServiceDeps {
  readonly store: TokenStore;
  readonly cipher: Cipher;
  readonly providers: { get(id: string): ProviderClient | undefined };
  readonly clock: Clock;
  readonly logger: Logger;
  /** Unique per replica: the lease owner. */
  readonly replicaId: string;
  readonly changes?: TokenChangeFeed | undefined;
  readonly pauseFeed?: ProviderPauseFeed | undefined;
  readonly audit?: AuditLog | undefined;
  readonly settings: {
    readonly cacheMaxEntries: number;
    readonly leaseSeconds: number;
    /** How often a lease holder renews its lease (default: a third of the lease). */
    readonly leaseHeartbeatMs?: number;
    /** Rate-limited providers: the longest pause obeyed, and the cap of the backoff without Retry-After. */
    readonly providerPause?: { readonly maxPauseMs: number; readonly backoffCapMs: number };
    /** When a caller sets no deadline, a refresh may take this long. */
    readonly defaultDeadlineMs?: number;
    readonly breakerFailureThreshold?: number;
    readonly breakerCooldownMs?: number;
    /**
     * Storing a refreshed set: `attempts` (5) while the caller waits, with waits growing from
     * `baseMs` (200) to `capMs` (2 000); a rotated refresh token is then retried in the background.
     */
    readonly writeRetry?: { readonly attempts?: number; readonly baseMs?: number; readonly capMs?: number };
    /** Bound on each database call and audit commit (`database.callTimeoutMs`); default 1 000. */
    readonly databaseCallTimeoutMs?: number;
    /** Longest a call waits for a token when it set no shorter deadline (`tokens.maxWaitSeconds`); default 30 000. */
    readonly maxWaitMs?: number;
    /** Most (caller, integration, token version, scope set) keys whose disclosure is remembered; default 2 × `cacheMaxEntries`. */
    readonly disclosureMaxKeys?: number;
  };
  /** Told of each database call's outcome (readiness learns of an outage from them). */
  readonly database?: DatabaseOutcomes | undefined;
  /** Observability hooks (metrics). */
  readonly events?: {
    cache?(hit: boolean): void;
    refresh?(provider: string, result: string, seconds: number): void;
    leaseWait?(): void;
    circuit?(provider: string, state: CircuitState): void;
    providerPause?(provider: string, seconds: number): void;
  };
}

export interface IssuedToken {
  readonly tokens: TokenSet;
  readonly integration: Integration;
}

export interface WarmToken {
  readonly issued: IssuedToken;
  commit(ctx: RequestContext): void;
}

export interface TokenService {
  /**
   * The live integration a selector names (errors: not_found, failed_precondition, needs re-auth).
   * `authorize` runs on the integration found before anything about its state is checked, so a
   * caller it refuses learns nothing beyond what `authorize` throws.
   */
  resolve(selector: TokenSelector, authorize?: (integration: Integration) => void): Promise<Integration>;
  /** What `resolve` answers at once from memory, or undefined when it must decide (see IntegrationResolver). */
  resolveWarm(selector: TokenSelector, authorize?: (integration: Integration) => void): Integration | undefined;
  /** A token for `integration` valid at least `minValidForMs`, refreshing when needed. */
  tokenFor(
    ctx: RequestContext,
    integration: Integration,
    minValidForMs: number,
    requiredScopes: readonly string[],
    /**
     * `internal`: the broker itself uses the token (sync reads the account with it): nobody is
     * handed a token, so no disclosure is audited and "last used" is not updated.
     */
    options?: { readonly internal?: boolean },
  ): Promise<IssuedToken>;
  /**
   * The answer `tokenFor` would give at once — token cached and valid for the ask, disclosure a
   * counted repeat — or undefined when `tokenFor` must decide (a first disclosure, a load, a
   * refresh, an error). No side effect until `commit`, which counts the call as `tokenFor` does
   * and must run in the same synchronous turn.
   */
  warmTokenFor(principal: Principal, integration: Integration, minValidForMs: number, requiredScopes: readonly string[]): WarmToken | undefined;
  /** Forces a refresh now through the same single-flight path (RefreshIntegration, sync). */
  refreshNow(ctx: RequestContext, integrationId: string): Promise<{ integration: Integration; refreshed: boolean }>;
  /**
   * For the proactive refresher: refreshes a claimed integration, under the claim's lease, when
   * its token expires within `withinMs` (someone else's fresher token counts). The claim's own
   * read of the integration decides: no second read. Returns whether this call refreshed at the provider.
   */
  refreshAhead(claimed: Pick<ClaimedRefresh, "integration" | "lease">, withinMs: number): Promise<boolean>;
  /** Drops the cached copy (delete, re-authorization); its counted disclosures are written and forgotten. */
  evict(integrationId: string): void;
  /** Writes the counted repeat disclosures (`token.reissued`, disclosures.ts); the broker runs it periodically. */
  flushDisclosures(): Promise<void>;
  circuitStates(): ReadonlyMap<string, CircuitState>;
  /** Remaining pause (ms) of each provider that rate-limited the broker (provider-pause.ts). */
  providerPauses(): ReadonlyMap<string, number>;
  /** Stops background work; rotated refresh tokens still unstored get one last, bounded write attempt. */
  close(): Promise<void>;
}
