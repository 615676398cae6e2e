/**
 * Reasons of races and stalls inside a token read, induced for real on a broker whose token
 * ciphertexts Vault (the transit emulator) opens: Vault slowed down holds the read at a known
 * step while the test acts, as a stalled key service or another replica would.
 * - `OPERATION_ABANDONED`: the shared read of a token set outlives the wait limit; its waiters
 *   are released (the read's own bound starts before any caller's wait, so it answers first).
 * - `REFRESH_LEASE_LOST`: between the refresh lease's grant and the refresh request, another
 *   replica takes the lease over (here: the test, writing the lease row as one would).
 */
import { Code } from "@connectrpc/connect";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import type { ReasonWorld } from "../support/reason-world.js";
import type { VaultEmulator } from "../support/vault-transit-emulator.js";
import type { WireCaller } from "../support/wire-call.js";
import { userFor, type WireCases } from "../support/wire-cases.js";
import { awaitedLater, waitUntil } from "../support/wait-until.js";

export interface RacesWorld extends ReasonWorld {
  readonly vault: VaultEmulator;
}

/** `tokens.maxWaitSeconds` of the world these rows run in. */
export const MAX_WAIT_SECONDS = 3;

/** Each Vault call takes this long: longer than the wait limit (the read is abandoned)... */
const STALLED_MS = (MAX_WAIT_SECONDS + 1) * 1000;
/** ... or well within it, a window for the test to act in between two Vault calls. */
const SLOW_MS = 1500;

async function withVaultLatency<T>(vault: VaultEmulator, ms: number, run: () => Promise<T>): Promise<T> {
  vault.setLatency(ms);
  try {
    return await run();
  } finally {
    vault.setLatency(0);
  }
}

function getToken(world: RacesWorld, wire: WireCaller, integrationId: string) {
  return wire.unary(TokenService.method.getAccessToken, { integrationId }, { authorization: world.admin });
}

export const RACE_CASES = {
  OPERATION_ABANDONED: {
    status: Code.DeadlineExceeded,
    metadataKeys: ["integration_id"],
    retry: true,
    timeoutMs: 60_000,
    // A fresh integration: its token set is not in memory, so the call reads and decrypts it.
    produce: async (world, wire) => {
      const integrationId = await world.connect(userFor("OPERATION_ABANDONED", wire));
      return withVaultLatency(world.vault, STALLED_MS, () => getToken(world, wire, integrationId));
    },
  },
  REFRESH_LEASE_LOST: {
    status: Code.Unavailable,
    metadataKeys: ["integration_id"],
    retry: true,
    timeoutMs: 60_000,
    produce: async (world, wire) => {
      const integrationId = await world.connect(userFor("REFRESH_LEASE_LOST", wire));
      await world.expire(integrationId);
      try {
        return await withVaultLatency(world.vault, SLOW_MS, async () => {
          const call = awaitedLater(getToken(world, wire, integrationId));
          // The lease is granted, and the refresh token is being decrypted before it is sent.
          await waitUntil(async () => {
            const [row] = await world.db.sql<{ owner: string | null }[]>`select lease_owner as owner from token_sets where integration_id = ${integrationId}`;
            return row?.owner != null;
          }, "the broker holds the refresh lease");
          await world.db.sql`update token_sets set lease_owner = 'another-replica', lease_expires_at = now() + interval '1 minute' where integration_id = ${integrationId}`;
          return await call;
        });
      } finally {
        await world.db.sql`update token_sets set lease_owner = null, lease_expires_at = null where integration_id = ${integrationId}`;
      }
    },
  },
} satisfies WireCases<RacesWorld>;
