/**
 * "Last used" of an integration, written at most once a minute per integration and never on
 * the caller's time: the write runs in the background and a failure is only logged.
 */
import { epochMs, type Clock, type Logger, type TokenStore } from "../ports.js";
import type { Integration } from "../types.js";

const TOUCH_EVERY_MS = 60_000;

export function createLastUse(deps: {
  readonly integrations: TokenStore["integrations"];
  readonly clock: Clock;
  readonly logger: Logger;
  readonly maxEntries: number;
}): (integration: Integration) => void {
  const lastTouched = new Map<string, number>();
  return (integration) => {
    const now = epochMs(deps.clock);
    if ((lastTouched.get(integration.id) ?? 0) > now - TOUCH_EVERY_MS) return;
    lastTouched.set(integration.id, now);
    if (lastTouched.size > deps.maxEntries) lastTouched.delete(lastTouched.keys().next().value ?? "");
    deps.integrations.touchLastUsed(integration.id, new Date(now)).catch((error: unknown) => deps.logger.warn({ err: error }, "could not record last use"));
  };
}
