/** watchChanges against an in-memory feed: positions, filtering, retention and policy reloads mid-stream. */
import { describe, expect, it } from "vitest";
import { BrokerError, isBrokerError } from "../../src/domain/errors.js";
import { watchChanges, type ChangeFeedStore, type ChangeFilter, type IntegrationChange, type WatchItem } from "../../src/domain/change-feed.js";
import type { Integration } from "../../src/domain/types.js";

function change(cursor: number, userId: string): IntegrationChange {
  const integration = { id: `int-${cursor}`, userId, provider: "google" } as unknown as Integration;
  return { cursor, type: "refreshed", time: new Date(0), integration };
}

function feed(events: IntegrationChange[], state = { horizon: 0 }): ChangeFeedStore {
  return {
    async after(query) {
      const newest = events.at(-1)?.cursor ?? 0;
      const changes = events.filter((e) => e.cursor > query.after && (query.userId === undefined || e.integration.userId === query.userId)).slice(0, query.limit);
      return { changes, scannedThrough: newest, horizon: state.horizon };
    },
    latest: async () => Math.max(events.at(-1)?.cursor ?? 0, state.horizon),
    horizon: async () => state.horizon,
    subscribe: async () => () => undefined,
  };
}

const fast = { pollMs: 5, heartbeatMs: 1_000, batchSize: 2 };

async function take(generator: AsyncGenerator<WatchItem>, n: number): Promise<WatchItem[]> {
  const items: WatchItem[] = [];
  for await (const item of generator) {
    items.push(item);
    if (items.length >= n) break;
  }
  return items;
}

describe("watchChanges", () => {
  it("starts at the newest position without a cursor, then delivers only what the filter lets through, in order", async () => {
    const events = [change(1, "alice"), change(2, "bob")];
    const stream = watchChanges(feed(events), () => ({ userId: "alice" }), undefined, new AbortController().signal, fast);
    const first = await stream.next();
    expect(first.value).toEqual({ cursor: 2 });
    events.push(change(3, "bob"), change(4, "alice"), change(5, "alice"));
    const items = await take(stream, 2);
    expect(items.map((i) => i.change?.cursor)).toEqual([4, 5]);
  });

  it("resumes after a cursor in batches and ends with CURSOR_EXPIRED once retention overtakes it", async () => {
    const state = { horizon: 0 };
    const events = [1, 2, 3, 4, 5].map((n) => change(n, "alice"));
    const stream = watchChanges(feed(events, state), () => ({}), 1, new AbortController().signal, fast);
    expect((await take(stream, 2)).map((i) => i.cursor)).toEqual([2, 3]);

    const lagging = watchChanges(feed(events, state), () => ({}), 1, new AbortController().signal, fast);
    await lagging.next();
    state.horizon = 4;
    const failure = await take(lagging, 10).catch((e: unknown) => e);
    expect(isBrokerError(failure, "failed_precondition")).toBe(true);
    expect((failure as BrokerError).reason).toBe("CURSOR_EXPIRED");
  });

  it("applies the current policy on every read: a caller whose rights were removed gets the refusal", async () => {
    const events = [change(1, "alice")];
    let allowed = true;
    const filter = (): ChangeFilter => {
      if (!allowed) throw new BrokerError("permission_denied", "may not act for users", { reason: "CANNOT_ACT_FOR_USERS" });
      return {};
    };
    const stream = watchChanges(feed(events), filter, 0, new AbortController().signal, fast);
    expect((await stream.next()).value?.change?.cursor).toBe(1);
    allowed = false;
    const failure = await take(stream, 1).catch((e: unknown) => e);
    expect(isBrokerError(failure, "permission_denied")).toBe(true);
  });
});
