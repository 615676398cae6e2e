import { afterEach, describe, expect, it, vi } from "vitest";
import { createIntegrationDeletion, type DeletionStore } from "../../src/domain/integration-deletion.js";
import { refreshBudget } from "../../src/domain/tokens/lease-heartbeat.js";
import type { AuditLog, Cipher, ProviderClient } from "../../src/domain/ports.js";
import type { Integration, RequestContext } from "../../src/domain/types.js";
import { silentLogger } from "../support/token-fakes.js";
import { awaitedLater } from "../support/wait-until.js";

const LEASE_MS = 10_000;

const integration: Integration = {
  id: "i-1",
  userId: "alice",
  provider: "p",
  externalAccount: { id: "acct", name: "acct", attributes: {} },
  grantedScopes: [],
  status: "active",
  statusReason: "",
  createdAt: new Date(0),
  updatedAt: new Date(0),
  lastRefreshedAt: null,
  lastUsedAt: null,
  accessTokenExpiresAt: null,
  refreshFailureCount: 0,
  hasRefreshToken: true,
};

const ctx: RequestContext = { principal: { kind: "admin", subject: "ops", issuer: "local" }, requestId: "r-1", peer: "test" };

/**
 * A refresh holder that keeps renewing its lease for `holdsForMs` (a long provider call followed
 * by write retries), and the moments the deletion erased the tokens.
 */
const tokenSet = { accessTokenCiphertext: "vault:v1:access", refreshTokenCiphertext: "vault:v1:refresh", tokenType: "Bearer", expiresAt: new Date(0), scopes: [], version: 1 };

function storeWithLiveHolder(holdsForMs: number) {
  const startedAt = Date.now();
  const erasedAt: number[] = [];
  const store: DeletionStore = {
    tokenSets: {
      acquireLease: async () => {
        const now = Date.now();
        if (now - startedAt < holdsForMs) return { acquired: false, holder: "holder", expiresAt: new Date(Math.min(now + LEASE_MS, startedAt + holdsForMs)) };
        return { acquired: true, version: 1, tokenSet, expiresAt: new Date(now + LEASE_MS), sent: undefined };
      },
      releaseLease: async () => undefined,
    },
    integrations: {
      markDeleted: async () => {
        erasedAt.push(Date.now() - startedAt);
        return { integration, alreadyDeleted: false };
      },
    },
    revocations: { claimDue: async () => [], complete: async () => undefined, reschedule: async () => undefined },
  };
  return { store, erasedAt };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("integration deletion and a live refresh holder", () => {
  it("waits for a holder still renewing past the refresh budget (its write retries) before erasing the tokens", async () => {
    vi.useFakeTimers();
    // Longer than a lease plus the provider call's budget (10 s each), within the hold limit.
    const holdsForMs = 25_000;
    expect(refreshBudget({}).holdLimitMs).toBeGreaterThan(holdsForMs);
    const { store, erasedAt } = storeWithLiveHolder(holdsForMs);
    const deletion = createIntegrationDeletion({
      store,
      cipher: {} as Cipher,
      providers: { get: (): ProviderClient | undefined => undefined },
      audit: { record: async () => undefined } satisfies AuditLog,
      clock: { now: () => new Date() },
      logger: silentLogger,
      replicaId: "r",
      onDeleted: () => undefined,
      settings: { leaseMs: LEASE_MS, holdLimitMs: refreshBudget({}).holdLimitMs, maxAttempts: 3, giveUpAfterMs: 60_000 },
    });
    const deleted = awaitedLater(deletion.delete(ctx, integration));
    await vi.advanceTimersByTimeAsync(holdsForMs + 1_000);
    await deleted;
    expect(erasedAt).toHaveLength(1);
    expect(erasedAt[0]).toBeGreaterThanOrEqual(holdsForMs);
  });
});
