/**
 * Token-set changes across replicas through PostgreSQL LISTEN/NOTIFY: a replica that writes a
 * refreshed token (or deletes, or marks for re-authorization) tells the others, which evict
 * their cached copy and wake their waiters. The payload is an id and a version, never a token.
 */
import type postgres from "postgres";
import type { Logger } from "../observability/logger.js";

export const TOKEN_CHANNEL = "oauth_broker_token_sets";

export interface TokenChange {
  readonly integrationId: string;
  /** The token-set version after the change; 0 when the token set is gone or unusable. */
  readonly version: number;
}

export interface TokenNotifications {
  publish(change: TokenChange): Promise<void>;
  subscribe(listener: (change: TokenChange) => void): () => void;
  close(): Promise<void>;
}

export async function createTokenNotifications(sql: postgres.Sql, logger: Logger): Promise<TokenNotifications> {
  const listeners = new Set<(change: TokenChange) => void>();
  const subscription = await sql.listen(
    TOKEN_CHANNEL,
    (payload) => {
      const [integrationId, version] = payload.split(":");
      if (!integrationId) return;
      const change = { integrationId, version: Number(version ?? 0) };
      for (const listener of listeners) listener(change);
    },
    () => logger.debug({ channel: TOKEN_CHANNEL }, "listening for token-set changes"),
  );
  return {
    async publish(change) {
      try {
        await sql.notify(TOKEN_CHANNEL, `${change.integrationId}:${change.version}`);
      } catch (error) {
        // The change is already stored: other replicas still see it on their next read.
        logger.warn({ err: error, integrationId: change.integrationId }, "could not notify other replicas of a token change");
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      listeners.clear();
      await subscription.unlisten();
    },
  };
}
