/**
 * Benchmark (c): a refresh storm. Three broker processes (`src/main.ts`, as `npm start` runs it)
 * share one PostgreSQL and one keyring; an oidc-provider peer plays Google and counts its token
 * endpoint calls. One connected account's token is made expired in the database, then 1,000
 * concurrent GetAccessToken calls for it are spread over the three replicas.
 * Target: exactly one token endpoint call. Also reported: the callers' latency beyond one
 * provider round trip (the refreshing replica's own measurement of its provider call).
 */
import { randomNonce, randomPKCECodeVerifier, randomState } from "openid-client";
import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import postgres from "postgres";
import { GetAccessTokenResponseSchema } from "../src/gen/oauthbroker/v1/token_service_pb.js";
import { createLogger } from "../src/observability/logger.js";
import { createProviderClient } from "../src/providers/create-provider-client.js";
import { createBrokerDataDir } from "../test/support/broker-data-dir.js";
import type { BrokerProcess } from "../test/support/broker-process.js";
import { connectAccount } from "../test/support/browser-flow.js";
import { startOidcPeer, type OidcPeer } from "../test/support/peers/oidc-peer.js";
import { testProviderConfig } from "../test/support/peers/provider-config.js";
import { benchLogger, freePort, logLevel, UNLIMITED_TOKEN_CALLS } from "./support/broker.js";
import { GET_ACCESS_TOKEN, tokenRequest } from "./cold-path.js";
import { median, quantile, unaryCall } from "./support/load.js";
import type { BenchServer } from "./support/postgres.js";
import { envInt, ms, verdict, type BenchReport } from "./support/report.js";

const REPLICAS = 3;
const CLIENT_ID = "broker-client";
const CLIENT_SECRET = "bench-peer-secret";
const DIRECT_REDIRECT = "http://127.0.0.1:1/direct-callback";

/** One provider round trip as the broker's provider client makes it: a refresh at the peer, median of `n`. */
async function providerRoundTrip(peer: OidcPeer, n: number): Promise<number> {
  const client = await createProviderClient(
    testProviderConfig({ id: "google", kind: "google", clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, endpoints: { issuer: peer.issuer } }),
    { logger: createLogger({ level: "silent" }) },
  );
  const state = randomState();
  const codeVerifier = randomPKCECodeVerifier();
  const nonce = randomNonce();
  const scopes = ["openid", "email", "profile"];
  const url = await client.authorizationUrl({ state, scopes, redirectUri: DIRECT_REDIRECT, codeVerifier, nonce });
  const callbackUrl = await peer.driveConsent(url, { username: "bench-direct" });
  const grant = await client.exchangeCode({ callbackUrl, expectedState: state, redirectUri: DIRECT_REDIRECT, codeVerifier, nonce, requestedScopes: scopes });
  const refreshToken = grant.tokens.refreshToken;
  if (refreshToken === undefined) throw new Error("the peer issued no refresh token");
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await client.refresh(refreshToken);
    times.push(performance.now() - t);
  }
  return median(times);
}

/** Sum and count of a Prometheus series (histogram `_sum`/`_count`, or a counter) across label sets. */
function scrape(text: string, name: string): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest.startsWith("{") || rest.startsWith(" ")) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

export async function benchRefreshStorm(server: BenchServer): Promise<BenchReport> {
  const callers = envInt("BENCH_STORM_CALLERS", 1_000);
  const databaseUrl = await server.createDatabase("storm");
  const data = await createBrokerDataDir("oauth-broker-bench-storm", benchLogger());
  const ports = await Promise.all(Array.from({ length: REPLICAS }, () => freePort()));
  const publicUrl = (port: number) => `http://127.0.0.1:${port}`;
  const peer = await startOidcPeer({
    flavor: "google",
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [...ports.map((port) => `${publicUrl(port)}/oauth/callback/google`), DIRECT_REDIRECT],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
  });
  const replicas: BrokerProcess[] = [];
  const clients: grpc.Client[] = [];
  try {
    await data.writeConfig([
      UNLIMITED_TOKEN_CALLS.trimEnd(),
      "providers:",
      "  google:",
      `    clientId: ${CLIENT_ID}`,
      "    clientSecret: ${BENCH_PEER_CLIENT_SECRET}",
      "    clientAuthMethod: client_secret_basic",
      `    endpoints: { issuer: "${peer.issuer}" }`,
      // The proactive refresher would otherwise race the storm for the expired token.
      "tokens:",
      "  proactiveRefreshIntervalSeconds: 3600",
      "",
    ]);
    const start = (port: number) =>
      data.startBroker(
        {
          DATABASE_URL: databaseUrl,
          BROKER_HTTP_ADDR: `127.0.0.1:${port}`,
          BROKER_PUBLIC_URL: publicUrl(port),
          BENCH_PEER_CLIENT_SECRET: CLIENT_SECRET,
          LOG_LEVEL: logLevel(),
        },
        90_000,
      );
    // The first one migrates the database; the others start on the migrated schema.
    const [first = 0, ...others] = ports;
    replicas.push(await start(first));
    replicas.push(...(await Promise.all(others.map(start))));

    const user = await data.token("bench-user", "user");
    const admin = await data.token("bench", "service", ["admin"]);
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${admin}`);
    const stormId = await connectAccount((replicas[0] as BrokerProcess).httpUrl, user, "google", "storm-user");
    const warmId = await connectAccount((replicas[0] as BrokerProcess).httpUrl, user, "google", "warm-user");

    // Connections and JIT warm on every replica, on another integration.
    for (const replica of replicas) clients.push(new grpc.Client(replica.grpcAddress, grpc.credentials.createInsecure()));
    for (const client of clients) for (let i = 0; i < 100; i++) await unaryCall(client, GET_ACCESS_TOKEN, tokenRequest(warmId), metadata);

    const idleRoundTrip = await providerRoundTrip(peer, 5);

    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    try {
      await sql`update token_sets set expires_at = now() - interval '1 minute' where integration_id = ${stormId}`;
    } finally {
      await sql.end();
    }

    const before = peer.tokenRequests();
    const request = tokenRequest(stormId);
    const outcomes = await Promise.all(
      Array.from({ length: callers }, (_, i) => {
        const client = clients[i % clients.length] as grpc.Client;
        const t = performance.now();
        return unaryCall(client, GET_ACCESS_TOKEN, request, metadata).then(
          (bytes) => ({ ok: true as const, ms: performance.now() - t, token: fromBinary(GetAccessTokenResponseSchema, bytes).accessToken }),
          (error: unknown) => ({ ok: false as const, ms: performance.now() - t, error: String(error) }),
        );
      }),
    );
    // A late second refresh would land after the callers were answered: give it time to show.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const calls = peer.tokenRequests() - before;

    const metrics = await Promise.all(
      replicas.map(async (replica) => {
        const text = await (await fetch(`${replica.httpUrl}/metrics`, { headers: { authorization: `Bearer ${admin}` } })).text();
        return {
          refreshes: scrape(text, "oauth_broker_token_refresh_seconds_count"),
          refreshSeconds: scrape(text, "oauth_broker_token_refresh_seconds_sum"),
          leaseWaits: scrape(text, "oauth_broker_refresh_lease_waits_total"),
        };
      }),
    );
    const refresher = metrics.findIndex((m) => m.refreshes > 0);
    const refreshing = metrics[refresher];
    const stormRoundTrip = refreshing ? (refreshing.refreshSeconds / refreshing.refreshes) * 1000 : idleRoundTrip;
    const ok = outcomes.filter((o) => o.ok);
    const failed = outcomes.filter((o) => !o.ok);
    const tokens = new Set(ok.map((o) => o.token));
    const latencies = ok.map((o) => o.ms).sort((a, b) => a - b);
    const added = latencies.map((l) => l - stormRoundTrip);
    const firstError = failed[0];
    return {
      title: `(c) refresh storm: ${REPLICAS} broker processes on one PostgreSQL (${server.origin}), ${callers.toLocaleString("en-US")} concurrent GetAccessToken calls on one expired token`,
      lines: [
        `callers: ${ok.length} answered, ${failed.length} failed${firstError && !firstError.ok ? ` (first: ${firstError.error})` : ""}; ${tokens.size} distinct access token(s) handed out`,
        `${refresher < 0 ? "no replica reports a refresh" : `refreshed by replica ${refresher + 1}`}; lease waits per replica: ${metrics.map((m) => m.leaseWaits).join(", ")}`,
        `one provider round trip: ${ms(stormRoundTrip)} during the storm (the refreshing replica's measurement), ${ms(idleRoundTrip)} idle (median of 5 direct refreshes)`,
        `callers' latency: p50 ${ms(quantile(latencies, 0.5))}, p99 ${ms(quantile(latencies, 0.99))}, max ${ms(latencies[latencies.length - 1] ?? 0)}`,
        `added over one provider round trip: p50 ${ms(quantile(added, 0.5))}, p99 ${ms(quantile(added, 0.99))}`,
      ],
      checks: [
        { label: `provider token endpoint calls = ${calls}`, target: "exactly 1", verdict: verdict(calls === 1) },
        { label: `callers answered = ${ok.length}/${callers}, all with the one new token`, target: "all", verdict: verdict(ok.length === callers && tokens.size === 1) },
      ],
    };
  } finally {
    for (const client of clients) client.close();
    await Promise.all(replicas.map((replica) => replica.stop()));
    await peer.close();
    await data.remove();
  }
}
