/**
 * The settings a SIGHUP reload replaces: policies, rate limits, authorization settings. They are
 * one snapshot swapped whole, so a call never sees the new policy beside the old limits.
 */
import type { Config } from "../config/types.js";
import type { PolicyHolder } from "../domain/policy.js";
import { createRpcPolicy, type RpcPolicy } from "../transport/rpc-policy.js";

export interface LiveSettingsSnapshot {
  readonly policy: RpcPolicy;
  readonly limits: Config["limits"];
  readonly authorization: Config["authorization"];
}

export interface LiveSettings {
  current(): LiveSettingsSnapshot;
  /** Calls in flight finish under the snapshot they started with; the next call sees the new one. */
  reload(next: Config): void;
  /** The policy part, for the parts that take a `PolicyHolder`. */
  readonly policy: PolicyHolder<RpcPolicy>;
}

function snapshotOf(config: Config): LiveSettingsSnapshot {
  return {
    policy: createRpcPolicy({ policies: config.policies, providers: config.providers }),
    limits: config.limits,
    authorization: config.authorization,
  };
}

export function createLiveSettings(config: Config): LiveSettings {
  let snapshot = snapshotOf(config);
  return {
    current: () => snapshot,
    reload(next) {
      snapshot = snapshotOf(next);
    },
    policy: {
      current: () => snapshot.policy,
      replace(next) {
        snapshot = { ...snapshot, policy: next };
      },
    },
  };
}

/** Once draining, the broker refuses new calls and reports NOT_SERVING until it stops. */
export interface DrainState {
  isDraining(): boolean;
  /** Starts draining; false when it had already started. */
  begin(): boolean;
}

export function createDrainState(): DrainState {
  let draining = false;
  return {
    isDraining: () => draining,
    begin() {
      if (draining) return false;
      draining = true;
      return true;
    },
  };
}
