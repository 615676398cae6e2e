/**
 * The refresh lease: across replicas, one row decides who calls the provider for an
 * integration. Its holder renews it while it works (lease-heartbeat.ts), records on it that the
 * refresh request is being sent, and gives it back with that "sent" mark kept while nobody knows
 * what the provider did with the request (refresh-takeover.ts).
 */
import { BrokerError } from "../errors.js";
import type { Logger, TakenLease, TokenStore } from "../ports.js";
import type { EncryptedTokenSet } from "../types.js";
import { startLeaseHeartbeat } from "./lease-heartbeat.js";
import type { RefreshSentMark } from "./refresh-takeover.js";

/** A lease this replica holds, from acquisition to release. */
export interface HeldLease {
  /** The request an earlier holder sent under this lease without a recorded answer, if any. */
  readonly inheritedMark: RefreshSentMark | undefined;
  /** The token-set version stored when the lease was acquired. */
  readonly version: number;
  /** The token set stored when the lease was acquired: no write but its holder's can replace it meanwhile. */
  readonly tokenSet: EncryptedTokenSet;
  /** Records that the refresh token of `version` is being sent now; REFRESH_LEASE_LOST when the lease passed to another replica. */
  markSent(version: number): Promise<void>;
  /**
   * Whether the lease's "sent" mark outlives this holder: an inherited mark does until the
   * provider answers; one of ours does when the answer never came. Unset, what was known at
   * acquisition holds.
   */
  keepSentMark(keep: boolean): void;
  /** The lease went back with the write that stored the refresh (RotatedTokenCustody.write): `end` then only stops the heartbeat. */
  givenBack(): void;
  /** Stops the heartbeat and gives the lease back, unless `keepLease` (it then lapses by itself). */
  end(keepLease: boolean): Promise<void>;
}

export interface RefreshLeases {
  readonly leaseMs: number;
  /** This replica: the owner of the leases it takes. */
  readonly replicaId: string;
  /** Refused: held elsewhere until `expiresAt`, or `gone` (no token set to lease). */
  acquire(
    integrationId: string,
  ): Promise<{ readonly acquired: true; readonly lease: HeldLease } | { readonly acquired: false; readonly expiresAt: Date | undefined; readonly gone: boolean }>;
  /** Holds a lease taken elsewhere for this replica (the proactive refresher's claim): the heartbeat starts now. */
  adopt(integrationId: string, taken: TakenLease): HeldLease;
  /** Takes the lease again, come what may: this replica keeps it while it retries a write. */
  hold(integrationId: string): Promise<void>;
  /** Gives the lease back; a failure is logged (the lease expires by itself). */
  release(integrationId: string, options?: { readonly keepSentMark?: boolean }): Promise<void>;
}

export function createRefreshLeases(deps: {
  readonly store: TokenStore;
  /** Unique per replica: the lease owner. */
  readonly replicaId: string;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  /** The longest a live holder renews the lease for one refresh (lease-heartbeat.ts `refreshBudget`). */
  readonly holdLimitMs: number;
  readonly logger: Logger;
}): RefreshLeases {
  const { store, replicaId, leaseMs, logger } = deps;

  function release(integrationId: string, options?: { readonly keepSentMark?: boolean }): Promise<void> {
    return store.tokenSets.releaseLease(integrationId, replicaId, options).catch((e: unknown) =>
      logger.warn({ err: e, integrationId }, "could not release the refresh lease; it expires by itself"),
    );
  }

  function held(integrationId: string, inheritedMark: RefreshSentMark | undefined, tokenSet: EncryptedTokenSet): HeldLease {
    const heartbeat = startLeaseHeartbeat({
      renew: () => store.tokenSets.renewLease(integrationId, replicaId, leaseMs),
      everyMs: deps.heartbeatMs,
      maxMs: deps.holdLimitMs,
      onLost: () => logger.warn({ integrationId }, "the refresh lease passed to another replica while this one held it"),
      onError: (e) => logger.warn({ err: e, integrationId }, "could not renew the refresh lease; it lapses unless a later renewal lands"),
    });
    let keepMark = inheritedMark !== undefined;
    let returned = false;
    return {
      inheritedMark,
      version: tokenSet.version,
      tokenSet,
      async markSent(version) {
        if (await store.tokenSets.markRefreshSent(integrationId, replicaId, version)) return;
        throw new BrokerError("provider_unavailable", "the refresh lease passed to another replica; retry", {
          reason: "REFRESH_LEASE_LOST",
          retryAfterMs: 500,
          metadata: { integration_id: integrationId },
        });
      },
      keepSentMark(keep) {
        keepMark = keep;
      },
      givenBack() {
        heartbeat.stop();
        returned = true;
      },
      async end(keepLease) {
        heartbeat.stop();
        if (!keepLease && !returned) await release(integrationId, { keepSentMark: keepMark });
      },
    };
  }

  return {
    leaseMs,
    replicaId,
    async acquire(integrationId) {
      const lease = await store.tokenSets.acquireLease(integrationId, replicaId, leaseMs);
      return lease.acquired
        ? { acquired: true, lease: held(integrationId, lease.sent, lease.tokenSet) }
        : { acquired: false, expiresAt: lease.expiresAt, gone: lease.holder === undefined };
    },
    adopt: (integrationId, taken) => held(integrationId, taken.sent, taken.tokenSet),
    async hold(integrationId) {
      await store.tokenSets.acquireLease(integrationId, replicaId, leaseMs).catch(() => undefined);
    },
    release,
  };
}
