/**
 * Custody of a rotated refresh token the database would not take. A rotated refresh token is
 * written together with the access token before anyone sees the new access token
 * (oauth-client-security.md §7). A failed write is retried from memory while the caller waits;
 * when the database stays away longer, the set is kept in memory on this replica together with
 * the lease, the write goes on in the background and an ALERT is logged: the rotated token is
 * never dropped, and this replica's next refresh of the integration starts from it.
 */
import { BrokerError } from "../errors.js";
import type { Logger, TokenStore, EncryptedTokenWrite } from "../ports.js";
import type { EncryptedTokenSet, Integration, TokenSet } from "../types.js";
import { fullJitterBackoff, sleep } from "../waiting.js";
import type { RefreshBudget } from "./lease-heartbeat.js";
import type { RefreshAudit, RefreshCaller } from "./refresh-audit.js";
import type { RefreshLeases } from "./refresh-lease.js";
import type { CurrentTokens, StoredTokens } from "./stored-tokens.js";
import type { TokenCache } from "./token-cache.js";

/** Upper bound between background writes of an unstored rotated token (each also renews the lease). */
const BACKGROUND_WRITE_CAP_MS = 30_000;
/** How long shutdown waits for the last write of unstored rotated tokens. */
const CLOSE_FLUSH_MS = 2_000;

/**
 * A refresh the provider answered with a rotated refresh token that is not stored yet. The
 * provider has already invalidated the previous refresh token, so until the write lands this is
 * the only refresh token of the grant that still works.
 */
export interface UnstoredRefresh {
  readonly integration: Integration;
  readonly expectedVersion: number;
  readonly tokens: TokenSet;
  /** Absent while the key service could not encrypt it either. */
  readonly write: EncryptedTokenWrite | undefined;
  readonly by: RefreshCaller;
}

export interface RotatedTokenCustody {
  /** Whether a rotated token of the integration waits here for its write (this replica then keeps the lease). */
  holds(integrationId: string): boolean;
  kept(integrationId: string): UnstoredRefresh | undefined;
  /** Forgets a kept token whose integration is gone; whether there was one. */
  drop(integrationId: string): boolean;
  /**
   * Stores a refreshed set, retrying from memory while the caller waits. If that is not enough
   * and the provider rotated the refresh token, the set stays in custody with the lease and the
   * write continues in the background; the caller gets UNAVAILABLE with a retry delay.
   * Returns the new version, the refresh lease then given back with it (nothing more happens
   * under it), or undefined when a newer set was stored by someone else.
   */
  write(integration: Integration, expectedVersion: number, tokens: TokenSet, by: RefreshCaller): Promise<number | undefined>;
  /**
   * Writes a kept set (this replica holds the lease). Returns it as now stored, or undefined when
   * a newer set was stored meanwhile (then the kept one is obsolete). Database failures are
   * thrown and the set stays kept.
   */
  storeKept(pending: UnstoredRefresh, stored: EncryptedTokenSet): Promise<CurrentTokens | undefined>;
  /** The longest wait between background writes of a kept set (a taker waits that long for one, refresh-takeover.ts). */
  readonly backgroundWriteCapMs: number;
  /** Stops the background writes; kept tokens get one last, bounded write attempt. */
  close(): Promise<void>;
}

export interface CustodyDeps {
  readonly store: TokenStore;
  readonly stored: StoredTokens;
  readonly leases: RefreshLeases;
  readonly cache: TokenCache;
  readonly audit: RefreshAudit;
  readonly logger: Logger;
  /** How often and how fast a write is retried while the caller waits. */
  readonly budget: Pick<RefreshBudget, "writeAttempts" | "writeBaseMs" | "writeCapMs">;
  /** One write attempt of a kept set, through the same single flight and lease as refreshes. */
  readonly flush: (pending: UnstoredRefresh) => Promise<unknown>;
}

export function createRotatedTokenCustody(deps: CustodyDeps): RotatedTokenCustody {
  const { store, stored, leases, cache, audit, logger } = deps;
  const { writeAttempts, writeBaseMs, writeCapMs } = deps.budget;
  // Each background write renews the kept lease: several chances per lease period.
  const backgroundCapMs = Math.max(10, Math.min(BACKGROUND_WRITE_CAP_MS, leases.leaseMs / 3));
  const unstored = new Map<string, UnstoredRefresh>();
  const retrying = new Set<string>();
  const stopping = new AbortController();

  /** Retries the write of a kept rotated token until it lands or is superseded (or shutdown). */
  function retryInBackground(integrationId: string): void {
    if (retrying.has(integrationId)) return;
    retrying.add(integrationId);
    void (async () => {
      for (let attempt = 1; !stopping.signal.aborted && unstored.has(integrationId); attempt++) {
        await sleep(fullJitterBackoff(attempt, writeBaseMs, backgroundCapMs), stopping.signal);
        const pending = unstored.get(integrationId);
        if (!pending || stopping.signal.aborted) break;
        try {
          await deps.flush(pending);
        } catch (error) {
          logger.warn({ err: error, integrationId, attempt }, "storing the kept rotated refresh token failed again; retrying in the background");
        }
      }
      retrying.delete(integrationId);
    })();
  }

  return {
    backgroundWriteCapMs: backgroundCapMs,
    holds: (integrationId) => unstored.has(integrationId),
    kept: (integrationId) => unstored.get(integrationId),
    drop: (integrationId) => unstored.delete(integrationId),

    async write(integration, expectedVersion, tokens, by) {
      const rotated = tokens.refreshToken !== undefined;
      let write: EncryptedTokenWrite | undefined;
      let failure: unknown;
      for (let attempt = 1; attempt <= writeAttempts; attempt++) {
        try {
          write ??= await stored.encrypt(integration.id, tokens);
          const version = await store.tokenSets.writeIfVersion(integration.id, expectedVersion, write, { releaseLeaseOf: leases.replicaId });
          if (version !== undefined || attempt === 1) return version;
          // An earlier attempt may have landed with its answer lost; the lease was taken again since.
          const ours = await stored.versionIfOurs(integration.id, tokens);
          if (ours !== undefined) await leases.release(integration.id);
          return ours;
        } catch (error) {
          failure = error;
          logger.warn({ err: error, integrationId: integration.id, attempt, rotatedRefreshToken: rotated }, "storing the refreshed token set failed; retrying from memory");
        }
        if (attempt < writeAttempts) {
          await sleep(fullJitterBackoff(attempt, writeBaseMs, writeCapMs));
          // Keep the lease meanwhile: another replica refreshing with the stored, now invalidated,
          // refresh token would make a rotating provider revoke the whole grant.
          await leases.hold(integration.id);
        }
      }
      const retryAfterMs = Math.max(1_000, writeCapMs);
      if (!rotated) {
        logger.error(
          { err: failure, integrationId: integration.id, provider: integration.provider, attempts: writeAttempts },
          "the refreshed token set could not be stored; the stored refresh token still works",
        );
        throw new BrokerError("database_unavailable", "the refreshed token could not be stored; retry", {
          cause: failure,
          retryAfterMs,
          metadata: { integration_id: integration.id },
        });
      }
      unstored.set(integration.id, { integration, expectedVersion, tokens, write, by });
      logger.error(
        { err: failure, integrationId: integration.id, provider: integration.provider, attempts: writeAttempts },
        "ALERT: a rotated refresh token could not be stored; it is kept in memory on this replica with the refresh lease, and the write is retried in the background",
      );
      retryInBackground(integration.id);
      throw new BrokerError("database_unavailable", "the refreshed token could not be stored yet; retry", {
        cause: failure,
        retryAfterMs,
        metadata: { integration_id: integration.id },
      });
    },

    async storeKept(pending, current) {
      const { integration } = pending;
      let version: number | undefined;
      if (current.version === pending.expectedVersion) {
        const write = pending.write ?? (await stored.encrypt(integration.id, pending.tokens));
        version = await store.tokenSets.writeIfVersion(integration.id, pending.expectedVersion, write);
      }
      version ??= await stored.versionIfOurs(integration.id, pending.tokens);
      unstored.delete(integration.id);
      if (version === undefined) {
        logger.error(
          { integrationId: integration.id, provider: integration.provider },
          "ALERT: a newer token set was stored while a rotated refresh token waited in memory; the kept one is dropped and the grant may need re-authorization",
        );
        await audit.failed(integration, pending.by, "ROTATED_TOKEN_SUPERSEDED");
        return undefined;
      }
      logger.warn({ integrationId: integration.id, provider: integration.provider, version }, "the rotated refresh token kept in memory is stored now");
      const visible: TokenSet = { ...pending.tokens, refreshToken: undefined };
      cache.set(integration.id, { tokens: visible, version });
      // The refresh happened long before; its event waited for its outcome. Nobody waits on it now.
      await audit.refreshed(integration, pending.by, { rotated: "true", stored_after_retry: "true" }).catch((e: unknown) =>
        logger.error({ err: e, integrationId: integration.id }, "the audit event of a refresh could not be written"),
      );
      return { tokens: visible, version, refreshToken: pending.tokens.refreshToken };
    },

    async close() {
      stopping.abort();
      const kept = [...unstored.values()];
      if (kept.length === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(kept.map((pending) => deps.flush(pending))),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_FLUSH_MS))),
      ]);
      clearTimeout(timer);
      for (const pending of unstored.values()) {
        logger.error(
          { integrationId: pending.integration.id, provider: pending.integration.provider },
          "ALERT: shutting down with a rotated refresh token that could not be stored; the grant will need re-authorization",
        );
      }
    },
  };
}
