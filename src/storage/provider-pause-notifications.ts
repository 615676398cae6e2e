/**
 * Provider pauses across replicas through PostgreSQL LISTEN/NOTIFY: a replica that a provider
 * rate-limited tells the others how long the pause lasts, so the provider sees one probe per
 * pause, not one per replica. The payload is a provider id, a remaining time and a reason.
 * Best effort: a lost notification costs one more rate-limited request from that replica.
 */
import type postgres from "postgres";
import { isErrorReason } from "../domain/error-reasons.js";
import type { ProviderPauseNotice } from "../domain/tokens/provider-pause.js";
import type { Logger } from "../observability/logger.js";

export const PROVIDER_PAUSE_CHANNEL = "oauth_broker_provider_pauses";

export interface ProviderPauseNotifications {
  publish(notice: ProviderPauseNotice): Promise<void>;
  subscribe(listener: (notice: ProviderPauseNotice) => void): () => void;
  close(): Promise<void>;
}

export async function createProviderPauseNotifications(sql: postgres.Sql, logger: Logger): Promise<ProviderPauseNotifications> {
  const listeners = new Set<(notice: ProviderPauseNotice) => void>();
  const subscription = await sql.listen(PROVIDER_PAUSE_CHANNEL, (payload) => {
    const notice = parseNotice(payload);
    if (notice === undefined) {
      logger.warn({ channel: PROVIDER_PAUSE_CHANNEL }, "ignored a malformed provider pause notification");
      return;
    }
    for (const listener of listeners) listener(notice);
  });
  return {
    async publish(notice) {
      try {
        await sql.notify(PROVIDER_PAUSE_CHANNEL, JSON.stringify(notice));
      } catch (error) {
        logger.warn({ err: error, provider: notice.provider }, "could not tell other replicas of a provider pause");
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

function parseNotice(payload: string): ProviderPauseNotice | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { provider, remainingMs, reason } = value as Record<string, unknown>;
  if (typeof provider !== "string" || typeof remainingMs !== "number" || !Number.isFinite(remainingMs) || typeof reason !== "string") return undefined;
  if (!isErrorReason(reason)) return undefined;
  return { provider, remainingMs, reason };
}
