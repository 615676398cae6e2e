/**
 * Counted repeat disclosures across the broker process's end, with the broker as a real process
 * on a shared PostgreSQL and a Microsoft-like peer. SIGTERM writes every count before the audit
 * log closes. SIGKILL loses at most what was counted since the last pass
 * (`tokens.reissueFlushSeconds`), never a first disclosure: each caller's first `token.issued`
 * row was committed before its answer.
 */
import type * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ProviderClient } from "../../src/domain/ports.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import type { BrokerProcess } from "../support/broker-process.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { grpcClient, unary } from "../support/grpc-client.js";
import { connectAtPeer, waitUntil } from "../support/peer-connect.js";
import { type OidcPeer } from "../support/peers/oidc-peer.js";
import { startMicrosoftPeer } from "../support/peers/microsoft-peer.js";
import { captureLogger } from "../support/log-capture.js";

const SECRET = "ms~secret.value_counts";
const REDIRECT_URI = "http://127.0.0.1:18092/oauth/callback/microsoft";
const INTERVAL_SECONDS = 1;

describe("counted repeat disclosures when the broker process ends", () => {
  let db: TestDatabase;
  let data: BrokerDataDir;
  let peer: OidcPeer;
  let client: ProviderClient;
  let broker: BrokerProcess | undefined;
  let grpcConnection: grpc.Client | undefined;
  const integrationIds: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    const { logger } = captureLogger();
    data = await createBrokerDataDir("oauth-broker-disclosure-counts", logger);
    const { cipher } = data;
    ({ peer, client } = await startMicrosoftPeer({ secret: SECRET, redirectUri: REDIRECT_URI, logger }));
    for (const username of ["ada", "brian", "chen"]) {
      const { integrationId } = await connectAtPeer({ peer, client, cipher, sql: db.sql, username, provider: "microsoft", redirectUri: REDIRECT_URI });
      integrationIds.push(integrationId);
    }
  }, 60_000);

  afterEach(async () => {
    grpcConnection?.close();
    await broker?.stop("SIGKILL");
    broker = undefined;
  });

  afterAll(async () => {
    await peer?.close();
    await db?.drop();
    await data?.remove();
  });

  async function start(flushSeconds: number): Promise<{ getToken: (subject: string, integrationId: string) => Promise<void> }> {
    await data.writeConfig([
      "providers:",
      "  microsoft:",
      "    kind: microsoft",
      "    clientId: broker-client",
      "    clientSecret: ${MS_SECRET}",
      "    clientAuthMethod: client_secret_post",
      "    tenant: organizations",
      `    endpoints: { issuer: '${peer.issuer}', api: '${peer.apiBase}' }`,
      // The repeats come as fast as the broker answers them.
      "limits:",
      "  perPrincipal:",
      "    token: { ratePerSecond: 100000, burst: 100000 }",
      "tokens:",
      "  proactiveRefreshIntervalSeconds: 3600",
      `  reissueFlushSeconds: ${flushSeconds}`,
    ]);
    broker = await data.startBroker({ DATABASE_URL: db.url, MS_SECRET: SECRET }, 60_000);
    const connection = grpcClient(broker.grpcAddress);
    grpcConnection = connection;
    const tokens = new Map<string, string>();
    return {
      async getToken(subject, integrationId) {
        let token = tokens.get(subject);
        if (token === undefined) {
          token = await data.token(subject, "service", ["admin"]);
          tokens.set(subject, token);
        }
        await unary(connection, TokenService.method.getAccessToken, { integrationId }, { metadata: { authorization: `Bearer ${token}` }, deadlineMs: 30_000 });
      },
    };
  }

  const firstDisclosures = async (subject: string) =>
    (await db.sql<{ integration_id: string }[]>`
      select integration_id from audit_events where action = 'token.issued' and caller = ${subject} order by sequence`).map((row) => row.integration_id);

  async function countedRepeats(subject: string): Promise<number> {
    const [row] = await db.sql<{ n: number }[]>`
      select coalesce(sum((details->>'count')::int), 0)::int as n from audit_events where action = 'token.reissued' and caller = ${subject}`;
    return row?.n ?? 0;
  }

  it("writes every counted repeat on SIGTERM, before the audit log closes", async () => {
    // The longest interval: the counts of the last calls are written by the shutdown alone.
    const { getToken } = await start(10);
    const [integrationId = ""] = integrationIds;
    await getToken("term-caller", integrationId);
    for (let i = 0; i < 200; i++) await getToken("term-caller", integrationId);
    expect(await firstDisclosures("term-caller")).toEqual([integrationId]);
    expect(await broker?.stop("SIGTERM")).toBe(0);
    expect(await countedRepeats("term-caller")).toBe(200);
    expect(await firstDisclosures("term-caller")).toEqual([integrationId]);
  }, 120_000);

  it("loses on SIGKILL at most the repeats counted since the last pass, and no first disclosure", async () => {
    const { getToken } = await start(INTERVAL_SECONDS);
    const [first = "", ...others] = integrationIds;
    await getToken("kill-caller", first);
    for (let i = 0; i < 50; i++) await getToken("kill-caller", first);
    await waitUntil(async () => (await countedRepeats("kill-caller")) === 50, "the periodic pass writes the counted repeats", 20_000, 50);

    // New first disclosures, then repeats for a few intervals, answered times noted, then the kill.
    for (const integrationId of others) await getToken("kill-caller", integrationId);
    const answeredAt: number[] = [];
    const until = performance.now() + 4 * INTERVAL_SECONDS * 1000;
    for (let i = 0; performance.now() < until; i++) {
      await getToken("kill-caller", integrationIds[i % integrationIds.length] ?? first);
      answeredAt.push(performance.now());
    }
    const killedAt = performance.now();
    await broker?.stop("SIGKILL");

    expect(new Set(await firstDisclosures("kill-caller"))).toEqual(new Set(integrationIds));
    const written = (await countedRepeats("kill-caller")) - 50;
    const lost = answeredAt.length - written;
    // A pass starts one interval after the previous one ended; the slack covers the writes and a loaded machine.
    const recent = answeredAt.filter((at) => at > killedAt - 2 * INTERVAL_SECONDS * 1000 - 500).length;
    expect(lost).toBeGreaterThanOrEqual(0);
    expect(lost).toBeLessThanOrEqual(recent);
    expect(written).toBeGreaterThan(0);
  }, 120_000);
});
