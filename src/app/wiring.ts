/**
 * What every wiring module of the composition root is given: the validated configuration, the
 * process's logger and clock, and the closers each started part registers itself with.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Config } from "../config/types.js";
import type { Clock } from "../domain/ports.js";
import type { Logger } from "../observability/logger.js";
import type { Closers } from "./closers.js";

export interface Wiring {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly closers: Closers;
  /** Names this process in leases and claims shared with other replicas. */
  readonly replicaId: string;
}

export function replicaIdentity(): string {
  return `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
}

/** How long a call may wait for a token; the watchdog and the token service read it alike. */
export function tokenWaitLimitMs(config: Config): number {
  return config.tokens.maxWaitSeconds * 1000;
}
