/**
 * A refresh whose answer never came back (the provider processed it, the broker timed out) leaves
 * the lease's "sent" mark behind: nobody knows whether the provider rotated the refresh token.
 * The next refresh therefore tries the stored refresh token once, and a rotating provider that
 * revokes on replay makes that ROTATED_TOKEN_LOST, not a second blind replay.
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
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createTokenSetRepository } from "../../src/storage/token-set-repository.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { connectAtPeer } from "../support/peer-connect.js";
import type { OidcPeer } from "../support/peers/oidc-peer.js";
import { capturingLogger } from "../support/peers/provider-config.js";
import { startMicrosoftPeer } from "../support/peers/microsoft-peer.js";

const REDIRECT_URI = "http://127.0.0.1:18089/oauth/callback/microsoft";
const ctx: RequestContext = { principal: { kind: "admin", subject: "test", issuer: "test" }, requestId: "r", peer: "127.0.0.1:1" };

describe("a refresh whose answer was lost", () => {
  const { logger, lines } = capturingLogger();
  let db: TestDatabase;
  let dataDir: string;
  let peer: OidcPeer;
  let client: ProviderClient;
  let cipher: Cipher;
  let tokens: TokenService;

  beforeAll(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-lost-answer-"));
    cipher = await createLocalKeyringCipher({ dataDir, logger });
    ({ peer, client } = await startMicrosoftPeer({ secret: "ms~secret.value_9", redirectUri: REDIRECT_URI, logger }));
    tokens = createTokenService({
      store: { integrations: createIntegrationRepository(db.sql), tokenSets: createTokenSetRepository(db.sql) },
      cipher,
      providers: { get: (id) => (id === "microsoft" ? client : undefined) },
      clock: systemClock,
      logger,
      replicaId: "replica-a",
      // The provider call gives up after 500 ms: long enough for the peer to process the refresh.
      settings: { cacheMaxEntries: 100, leaseSeconds: 5, defaultDeadlineMs: 500 },
    });
  });

  afterAll(async () => {
    await tokens?.close();
    await peer?.close();
    await db?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("keeps the sent mark after a timeout and tries the stored refresh token once more only", async () => {
    const { integrationId } = await connectAtPeer({ peer, client, cipher, sql: db.sql, username: "mallory", provider: "microsoft", redirectUri: REDIRECT_URI });
    await db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = ${integrationId}`;
    const integration = await tokens.resolve({ integrationId });
    const before = peer.tokenRequests();

    peer.setWithholdAnswers(true);
    const lost = await tokens.tokenFor(ctx, integration, 60_000, []).catch((e: unknown) => e);
    peer.setWithholdAnswers(false);
    // The refresh budget ran out while the provider held its answer.
    expect(isBrokerError(lost) && [lost.code, lost.reason]).toEqual(["deadline_exceeded", "CANCELLED"]);
    expect(peer.tokenRequests() - before).toBe(1);
    const [row] = await db.sql<{ lease_owner: string | null; refresh_sent_by: string | null; refresh_sent_version: number | null }[]>`
      select lease_owner, refresh_sent_by, refresh_sent_version::int as refresh_sent_version from token_sets where integration_id = ${integrationId}`;
    expect(row).toEqual({ lease_owner: null, refresh_sent_by: "replica-a", refresh_sent_version: 1 });

    const refused = await tokens.tokenFor(ctx, integration, 60_000, []).catch((e: unknown) => e);
    expect(isBrokerError(refused, "integration_needs_reauth") && refused.reason).toBe("ROTATED_TOKEN_LOST");
    expect(peer.tokenRequests() - before).toBe(2);
    const [status] = await db.sql<{ status: string; status_reason: string }[]>`select status, status_reason from integrations where id = ${integrationId}`;
    expect(status).toEqual({ status: "needs_reauth", status_reason: "rotated_token_lost" });
    expect(lines.some((line) => line.includes("ALERT") && line.includes("replica-a"))).toBe(true);
  });
});
