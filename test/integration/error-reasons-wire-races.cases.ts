/**
 * Reasons of races and stalls inside a token read, induced for real on a broker whose token
 * ciphertexts Vault (the transit emulator) opens: Vault slowed down holds the read at a known
 * step while the test acts, as a stalled key service or another replica would.
 * - `OPERATION_ABANDONED`: the shared read of a token set outlives the wait limit; its waiters
 *   are released (the read's own bound starts before any caller's wait, so it answers first).
 * - `REFRESH_LEASE_LOST`: between the refresh lease's grant and the refresh request, another
 *   replica takes the lease over (here: the test, writing the lease row as one would).
 * - `INTEGRATION_ID_CHANGED`: a first connection of an account loses the race to a concurrent
 *   one (whose uncommitted row the test holds), and while it encrypts its tokens again for the
 *   winner's id, the winner is deleted and the account connected once more under another id.
 */
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import type { TransactionSql } from "postgres";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
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

/** The PostgreSQL backend of the broker's statement that waits for a lock, once there is one. */
async function backendWaitingForLock(world: RacesWorld): Promise<number> {
  let pid: number | undefined;
  await waitUntil(async () => {
    const [row] = await world.db.sql<{ pid: number }[]>`
      select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`;
    pid = row?.pid;
    return pid !== undefined;
  }, "the broker waits for the concurrent connection's row");
  return pid ?? 0;
}

/** A live integration of `user`'s account at the scripted peer (whose userinfo names the user), as another connection writes it. */
function connectedElsewhere(tx: TransactionSql, id: string, user: string) {
  return tx`insert into integrations (id, user_id, provider, external_account_id) values (${id}, ${user}, 'lookalike', ${user})`;
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
  INTEGRATION_ID_CHANGED: {
    status: Code.AlreadyExists,
    metadataKeys: ["integration_id"],
    timeoutMs: 60_000,
    produce: async (world, wire) => {
      const user = userFor("INTEGRATION_ID_CHANGED", wire);
      const state = await world.session(user);
      const [winner, later] = [randomUUID(), randomUUID()];
      let commitWinner = () => {};
      const winnerMayCommit = new Promise<void>((resolve) => (commitWinner = resolve));
      // The concurrent first connection, not committed yet: the broker finds no live integration,
      // and its insert waits for this one.
      const concurrent = awaitedLater(
        world.db.sql.begin(async (tx) => {
          await connectedElsewhere(tx, winner, user);
          await winnerMayCommit;
        }),
      );
      try {
        return await withVaultLatency(world.vault, SLOW_MS, async () => {
          const call = awaitedLater(
            wire.unary(AuthorizationService.method.completeAuthorization, { provider: "lookalike", state, code: `code-for-${user}` }, { authorization: world.admin }),
          );
          const pid = await backendWaitingForLock(world);
          commitWinner();
          await concurrent;
          // The broker's first write ends (its transaction rolled back) and it encrypts the tokens
          // again for the winner's id, at Vault: meanwhile the winner is deleted and the account
          // connected again.
          await waitUntil(async () => {
            const [row] = await world.db.sql<{ state: string }[]>`select state from pg_stat_activity where pid = ${pid}`;
            return row?.state === "idle";
          }, "the broker's first write rolled back");
          await world.db.sql.begin(async (tx) => {
            await tx`update integrations set status = 'deleted', deleted_at = now() where id = ${winner}`;
            await connectedElsewhere(tx, later, user);
          });
          return await call;
        });
      } finally {
        commitWinner();
        await concurrent.catch(() => undefined);
      }
    },
  },
} satisfies WireCases<RacesWorld>;
