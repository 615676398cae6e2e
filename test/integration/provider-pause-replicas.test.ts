/**
 * A provider pause is shared across replicas through PostgreSQL: after one replica gets
 * `429, Retry-After`, another replica sends nothing to that provider until the pause is over,
 * and answers its callers at once with the remaining pause.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalKeyringCipher } from "../../src/crypto/local-keyring-cipher.js";
import { isBrokerError } from "../../src/domain/errors.js";
import { systemClock, type Cipher, type ProviderClient } from "../../src/domain/ports.js";
import { createTokenService, type TokenService } from "../../src/domain/tokens/token-service.js";
import type { RequestContext } from "../../src/domain/types.js";
import { createDatabase, type Database } from "../../src/storage/database.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createProviderPauseNotifications, type ProviderPauseNotifications } from "../../src/storage/provider-pause-notifications.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectAtPeer, waitUntil } from "../support/peer-connect.js";
import { RETRY_AFTER_SECONDS, type OidcPeer } from "../support/peers/oidc-peer.js";
import { captureLogger } from "../support/log-capture.js";
import { startMicrosoftPeer } from "../support/peers/microsoft-peer.js";

const REDIRECT_URI = "http://127.0.0.1:18090/oauth/callback/microsoft";
const ctx: RequestContext = { principal: { kind: "admin", subject: "test", issuer: "test" }, requestId: "r", peer: "127.0.0.1:1" };

describe("a provider pause across replicas", () => {
  const { logger } = captureLogger();
  let db: TestDatabase;
  let dataDir: string;
  let peer: OidcPeer;
  let client: ProviderClient;
  let cipher: Cipher;
  const replicas: Array<{ database: Database; feed: ProviderPauseNotifications; tokens: TokenService }> = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-pause-replicas-"));
    cipher = await createLocalKeyringCipher({ dataDir, logger });
    ({ peer, client } = await startMicrosoftPeer({ secret: "ms~secret.value_10", redirectUri: REDIRECT_URI, logger }));
    for (const name of ["replica-a", "replica-b"]) {
      const database = createDatabase({ url: db.url, poolSize: 2, logger });
      const feed = await createProviderPauseNotifications(database.sql, logger);
      const tokens = createTokenService({
        store: { integrations: createIntegrationRepository(database.sql), tokenSets: createTokenSetRepository(database.sql) },
        cipher,
        providers: { get: (id) => (id === "microsoft" ? client : undefined) },
        clock: systemClock,
        logger,
        replicaId: name,
        pauseFeed: feed,
        settings: { cacheMaxEntries: 100, leaseSeconds: 5 },
      });
      replicas.push({ database, feed, tokens });
    }
  });

  afterAll(async () => {
    for (const { database, feed, tokens } of replicas) {
      await tokens.close();
      await feed.close();
      await database.close();
    }
    await peer?.close();
    await db?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("keeps the other replica from sending while the pause lasts", async () => {
    const [a, b] = replicas;
    if (!a || !b) throw new Error("two replicas expected");
    const first = await connectAtPeer({ peer, client, cipher, sql: db.sql, username: "nina", provider: "microsoft", redirectUri: REDIRECT_URI });
    const second = await connectAtPeer({ peer, client, cipher, sql: db.sql, username: "oscar", provider: "microsoft", redirectUri: REDIRECT_URI });
    await db.sql`update token_sets set expires_at = now() - interval '1 second'`;
    const before = peer.tokenRequests();
    peer.setRetryAfter(30);
    peer.setTokenEndpointFault("429");
    try {
      const limited = await a.tokens.tokenFor(ctx, await a.tokens.resolve({ integrationId: first.integrationId }), 60_000, []).catch((e: unknown) => e);
      expect(isBrokerError(limited, "provider_rate_limited")).toBe(true);
      expect(peer.tokenRequests() - before).toBe(1);
      await waitUntil(() => b.tokens.providerPauses().has("microsoft"), "replica b hears of the pause");

      const refused = await b.tokens.tokenFor(ctx, await b.tokens.resolve({ integrationId: second.integrationId }), 60_000, []).catch((e: unknown) => e);
      expect(isBrokerError(refused, "provider_rate_limited") && [refused.reason, refused.metadata["paused"]]).toEqual(["PROVIDER_RATE_LIMITED", "true"]);
      expect(isBrokerError(refused) && refused.retryAfterMs).toBeGreaterThan(25_000);
      expect(peer.tokenRequests() - before).toBe(1);
      // Answered before any lease or write: the refused call records no refresh failure.
      const [row] = await db.sql<{ refresh_failure_count: number }[]>`select refresh_failure_count from integrations where id = ${second.integrationId}`;
      expect(row?.refresh_failure_count).toBe(0);
    } finally {
      peer.setTokenEndpointFault("none");
      peer.setRetryAfter(RETRY_AFTER_SECONDS);
    }
  });
});
