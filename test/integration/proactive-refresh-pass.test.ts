/**
 * One proactive pass claims each integration once. With the key service sealed every refresh
 * fails before it reaches a provider and leaves no backoff, so the claim's lease comes straight
 * back: without the pass remembering what it claimed, it would claim the same integrations again
 * and again up to its batch size (seen: 52 claims for 21 integrations).
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BrokerError } from "../../src/domain/errors.js";
import type { Cipher, ClaimedRefresh } from "../../src/domain/ports.js";
import { systemClock } from "../../src/domain/ports.js";
import { createTokenService } from "../../src/domain/tokens/token-service.js";
import { startProactiveRefresher } from "../../src/jobs/proactive-refresh.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { captureLogger } from "../support/log-capture.js";

const sealed = (): never => {
  throw new BrokerError("key_service_unavailable", "the key service is sealed", { reason: "KEY_SERVICE_UNAVAILABLE", retryAfterMs: 1_000 });
};
const sealedCipher: Cipher = {
  kind: "vault-transit",
  encrypt: async () => sealed(),
  decrypt: async () => sealed(),
  encryptBatch: async () => sealed(),
  decryptBatch: async () => sealed(),
  rewrapBatch: async () => sealed(),
  versionOf: () => 1,
  latestVersion: async () => 1,
  check: async () => sealed(),
  close: async () => undefined,
};

describe("a proactive pass while the key service is sealed", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("claims each expiring integration exactly once", async () => {
    const { logger } = captureLogger();
    const integrations = createIntegrationRepository(db.sql);
    const tokenSets = createTokenSetRepository(db.sql);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const { integration } = await integrations.upsertWithTokens({
        id: randomUUID(),
        userId: `user-${i}`,
        provider: "microsoft",
        externalAccount: { id: randomUUID(), name: "", attributes: {} },
        grantedScopes: ["openid"],
        tokens: {
          accessTokenCiphertext: "vault:v1:access",
          refreshTokenCiphertext: "vault:v1:refresh",
          tokenType: "Bearer",
          expiresAt: new Date(Date.now() + 60_000),
          scopes: ["openid"],
        },
      });
      ids.push(integration.id);
      // Issued an hour ago: the claim's window, not half the lifetime, decides.
      await db.sql`update integrations set last_refreshed_at = now() - interval '1 hour' where id = ${integration.id}`;
    }
    const tokens = createTokenService({
      store: { integrations, tokenSets },
      cipher: sealedCipher,
      providers: { get: () => undefined },
      clock: systemClock,
      logger,
      replicaId: "replica-a",
      settings: { cacheMaxEntries: 100, leaseSeconds: 5 },
    });
    const claims: ClaimedRefresh[] = [];
    const refresher = startProactiveRefresher({
      claim: async (request) => {
        const claimed = await tokenSets.claimExpiring(request);
        claims.push(...claimed);
        return claimed;
      },
      tokenService: tokens,
      logger,
      replicaId: "replica-a",
      windowMs: 300_000,
      intervalMs: 60_000,
      leaseMs: 5_000,
      concurrency: 2,
      schedule: false,
    });
    expect(await refresher.runOnce()).toBe(0);
    await refresher.stop();
    await tokens.close();
    expect(claims.map((c) => c.integrationId).sort()).toEqual([...ids].sort());
  });
});
