/**
 * In-memory fakes of the token lifecycle's ports, for unit tests without I/O: a store with the
 * lease semantics of the PostgreSQL repository (one owner until the lease expires on the clock,
 * a "sent" mark, writes conditional on the version), a reversible cipher, a scripted provider,
 * an audit log and a change feed that deliver synchronously.
 */
import type { AuditEventInput, AuditLog, Cipher, Clock, ProviderClient, ProviderGrant, TokenChangeFeed, TokenStore, EncryptedTokenWrite } from "../../src/domain/ports.js";
import type { RefreshSentMark } from "../../src/domain/tokens/refresh-takeover.js";
import type { EncryptedTokenSet, Integration, RequestContext, TokenSet } from "../../src/domain/types.js";

export const NOW = new Date("2030-01-01T12:00:00Z");

export function callerContext(extra: Partial<RequestContext> = {}): RequestContext {
  return { principal: { kind: "service", subject: "backend", issuer: "local" }, requestId: "req-1", peer: "127.0.0.1:1", ...extra };
}

export function integrationFixture(id = "int-1", extra: Partial<Integration> = {}): Integration {
  return {
    id,
    userId: "alice",
    provider: "sandbox",
    externalAccount: { id: "acct-1", name: "Alice", attributes: {} },
    grantedScopes: ["read"],
    status: "active",
    statusReason: "",
    createdAt: NOW,
    updatedAt: NOW,
    lastRefreshedAt: null,
    lastUsedAt: null,
    accessTokenExpiresAt: null,
    refreshFailureCount: 0,
    hasRefreshToken: true,
    ...extra,
  };
}

/** Ciphertexts spell their plaintext and context, so a test can read what was stored. */
export function fakeCipher(): Cipher & { decryptBatches: number } {
  const seal = (plaintext: string, context: string) => `fake:${context}:${plaintext}`;
  const open = (ciphertext: string, context: string) => {
    const prefix = `fake:${context}:`;
    if (!ciphertext.startsWith(prefix)) throw new Error("ciphertext bound to another row");
    return ciphertext.slice(prefix.length);
  };
  const cipher = {
    kind: "fake",
    decryptBatches: 0,
    encrypt: async (input: { plaintext: string; context: string }) => seal(input.plaintext, input.context),
    decrypt: async (input: { ciphertext: string; context: string }) => open(input.ciphertext, input.context),
    encryptBatch: async (inputs: readonly { plaintext: string; context: string }[]) => inputs.map((i) => seal(i.plaintext, i.context)),
    async decryptBatch(inputs: readonly { ciphertext: string; context: string }[]) {
      cipher.decryptBatches++;
      return inputs.map((i) => open(i.ciphertext, i.context));
    },
    rewrapBatch: async (inputs: readonly { ciphertext: string }[]) => inputs.map((i) => i.ciphertext),
    versionOf: () => 1,
    latestVersion: async () => 1,
    check: async () => undefined,
    close: async () => undefined,
  };
  return cipher;
}

interface Lease {
  owner: string;
  expiresAt: number;
  sent?: RefreshSentMark | undefined;
}

export interface FakeTokenStore extends TokenStore {
  readonly rows: Map<string, EncryptedTokenSet>;
  readonly records: Map<string, Integration>;
  readonly leases: Map<string, Lease>;
  readonly reads: { tokenSets: number };
  readonly refreshFailures: Array<{ id: string; reason: string }>;
  /** While set, every token write throws (the database is away). */
  failWrites: boolean;
  /** Stores `tokens` for `integrationId` as a fresh version (another replica's write). */
  put(integration: Integration, tokens: TokenSet): void;
  /** The stored set in plaintext. */
  plaintext(integrationId: string): { accessToken: string; refreshToken: string | undefined; version: number } | undefined;
}

/** `changes`: the feed a landed write announces itself on, as PostgreSQL's write does with `pg_notify`. */
export function fakeTokenStore(clock: Clock, changes?: TokenChangeFeed): FakeTokenStore {
  const rows = new Map<string, EncryptedTokenSet>();
  const records = new Map<string, Integration>();
  const leases = new Map<string, Lease>();
  const now = () => clock.now().getTime();
  const liveLease = (id: string) => {
    const lease = leases.get(id);
    return lease && lease.expiresAt > now() ? lease : undefined;
  };
  const unseal = (ciphertext: string, id: string) => ciphertext.slice(`fake:${id}:`.length);
  const store: FakeTokenStore = {
    rows,
    records,
    leases,
    reads: { tokenSets: 0 },
    refreshFailures: [],
    failWrites: false,
    put(integration, tokens) {
      records.set(integration.id, integration);
      const write: EncryptedTokenWrite = {
        accessTokenCiphertext: `fake:${integration.id}:${tokens.accessToken}`,
        refreshTokenCiphertext: tokens.refreshToken === undefined ? null : `fake:${integration.id}:${tokens.refreshToken}`,
        tokenType: tokens.tokenType,
        expiresAt: tokens.expiresAt,
        scopes: tokens.scopes,
      };
      rows.set(integration.id, { ...write, version: (rows.get(integration.id)?.version ?? 0) + 1 });
    },
    plaintext(integrationId) {
      const row = rows.get(integrationId);
      if (!row) return undefined;
      return {
        accessToken: unseal(row.accessTokenCiphertext, integrationId),
        refreshToken: row.refreshTokenCiphertext === null ? undefined : unseal(row.refreshTokenCiphertext, integrationId),
        version: row.version,
      };
    },
    integrations: {
      get: async (id) => records.get(id),
      findForUser: async (userId, provider, externalAccountId) =>
        [...records.values()].filter(
          (i) => i.userId === userId && i.provider === provider && i.status !== "deleted" && (externalAccountId === undefined || i.externalAccount.id === externalAccountId),
        ),
      async markNeedsReauth(id, reason) {
        const found = records.get(id);
        if (found) records.set(id, { ...found, status: "needs_reauth", statusReason: reason });
      },
      async recordRefreshFailure(id, reason) {
        store.refreshFailures.push({ id, reason });
      },
      touchLastUsed: async () => undefined,
    },
    tokenSets: {
      async get(integrationId) {
        store.reads.tokenSets++;
        return rows.get(integrationId);
      },
      async writeIfVersion(integrationId, expectedVersion, tokens, options) {
        if (store.failWrites) throw new Error("connection refused");
        const current = rows.get(integrationId);
        if (!current || current.version !== expectedVersion) return undefined;
        rows.set(integrationId, { ...tokens, version: current.version + 1 });
        // The write clears the sent mark; with `releaseLeaseOf` the lease goes with it.
        const held = leases.get(integrationId);
        if (held !== undefined && held.owner === options?.releaseLeaseOf) leases.delete(integrationId);
        else if (held !== undefined) leases.set(integrationId, { ...held, sent: undefined });
        await changes?.publish({ integrationId, version: current.version + 1 });
        return current.version + 1;
      },
      async acquireLease(integrationId, owner, ttlMs) {
        const held = liveLease(integrationId);
        if (held && held.owner !== owner) return { acquired: false, holder: held.owner, expiresAt: new Date(held.expiresAt) };
        const row = rows.get(integrationId);
        if (row === undefined) return { acquired: false, holder: undefined, expiresAt: undefined };
        const sent = leases.get(integrationId)?.sent;
        leases.set(integrationId, { owner, expiresAt: now() + ttlMs, sent });
        return { acquired: true, version: row.version, tokenSet: row, expiresAt: new Date(now() + ttlMs), sent };
      },
      async releaseLease(integrationId, owner, options) {
        const held = leases.get(integrationId);
        if (held?.owner !== owner) return;
        if (options?.keepSentMark && held.sent) leases.set(integrationId, { owner, expiresAt: 0, sent: held.sent });
        else leases.delete(integrationId);
      },
      async renewLease(integrationId, owner, ttlMs) {
        const held = liveLease(integrationId);
        if (held?.owner !== owner) return false;
        held.expiresAt = now() + ttlMs;
        return true;
      },
      async markRefreshSent(integrationId, owner, version) {
        const held = liveLease(integrationId);
        if (held?.owner !== owner) return false;
        held.sent = { version, by: owner, at: clock.now() };
        return true;
      },
    },
  };
  return store;
}

/** A provider whose refresh answers `answer` (called with the refresh token it was sent). */
export function fakeProvider(answer: (refreshToken: string, call: number) => Promise<ProviderGrant>): ProviderClient & { readonly sent: string[] } {
  const sent: string[] = [];
  return {
    id: "sandbox",
    sent,
    authorizationUrl: async () => new URL("https://issuer.test/authorize"),
    exchangeCode: async () => {
      throw new Error("not used");
    },
    refresh(refreshToken) {
      sent.push(refreshToken);
      return answer(refreshToken, sent.length);
    },
    revoke: async () => ({ outcome: "not_supported" }),
  };
}

export function recordingAudit(): AuditLog & { readonly events: AuditEventInput[] } {
  const events: AuditEventInput[] = [];
  return { events, record: async (event) => void events.push(event) };
}

export function inMemoryChangeFeed(): TokenChangeFeed & { readonly published: Array<{ integrationId: string; version: number }> } {
  const listeners = new Set<(change: { integrationId: string; version: number }) => void>();
  const published: Array<{ integrationId: string; version: number }> = [];
  return {
    published,
    async publish(change) {
      published.push(change);
      for (const listener of listeners) listener(change);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export const silentLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
