/**
 * In-memory storage for an embedded `oidc-provider` (the sandbox, test peers). Each provider
 * gets its own store, so several can run in one process, and revoking a grant removes every
 * token it issued (which is how a replayed rotated refresh token kills the whole grant).
 * State is lost on restart: the sandbox's grants then end with `invalid_grant`, like a real
 * provider's revoked grant.
 */

export type AdapterPayload = Record<string, unknown>;

/** The storage contract `oidc-provider` calls (its `adapter` configuration option). */
export interface OidcProviderAdapter {
  upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void>;
  find(id: string): Promise<AdapterPayload | undefined>;
  findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
  findByUid(uid: string): Promise<AdapterPayload | undefined>;
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

interface Entry {
  readonly payload: AdapterPayload;
  readonly expiresAt: number | undefined;
}

const SWEEP_EVERY = 200;

/** Returns the factory `oidc-provider` calls once per model name. */
export function createMemoryAdapterFactory(now: () => number = Date.now): (model: string) => OidcProviderAdapter {
  const entries = new Map<string, Entry>();
  const byUid = new Map<string, string>();
  const byUserCode = new Map<string, string>();
  const byGrant = new Map<string, Set<string>>();
  let writes = 0;

  const live = (key: string): Entry | undefined => {
    const entry = entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= now()) {
      remove(key);
      return undefined;
    }
    return entry;
  };

  const remove = (key: string): void => {
    const entry = entries.get(key);
    entries.delete(key);
    const grantId = entry?.payload["grantId"];
    if (typeof grantId === "string") byGrant.get(grantId)?.delete(key);
  };

  const sweep = (): void => {
    for (const key of [...entries.keys()]) live(key);
  };

  return (model) => {
    const keyOf = (id: string): string => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        const key = keyOf(id);
        entries.set(key, { payload: { ...payload }, expiresAt: expiresIn === undefined ? undefined : now() + expiresIn * 1000 });
        if (typeof payload["uid"] === "string") byUid.set(payload["uid"], id);
        if (typeof payload["userCode"] === "string") byUserCode.set(payload["userCode"], id);
        if (typeof payload["grantId"] === "string") {
          const members = byGrant.get(payload["grantId"]) ?? new Set<string>();
          members.add(key);
          byGrant.set(payload["grantId"], members);
        }
        writes += 1;
        if (writes % SWEEP_EVERY === 0) sweep();
      },
      async find(id) {
        return live(keyOf(id))?.payload;
      },
      async findByUid(uid) {
        const id = byUid.get(uid);
        return id === undefined ? undefined : live(keyOf(id))?.payload;
      },
      async findByUserCode(userCode) {
        const id = byUserCode.get(userCode);
        return id === undefined ? undefined : live(keyOf(id))?.payload;
      },
      async consume(id) {
        const entry = live(keyOf(id));
        if (entry !== undefined) entry.payload["consumed"] = Math.floor(now() / 1000);
      },
      async destroy(id) {
        remove(keyOf(id));
      },
      async revokeByGrantId(grantId) {
        for (const key of byGrant.get(grantId) ?? []) entries.delete(key);
        byGrant.delete(grantId);
      },
    };
  };
}
