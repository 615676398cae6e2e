/**
 * Benchmark (e): refresh capacity. 100,000 integrations at a provider look-alike (a token
 * endpoint answering each refresh after 20 ms with a one-hour token) all come due inside the
 * proactive window at once; broker processes (the compiled build as the image runs it, or `src/main.ts` as `npm start` does) on one
 * PostgreSQL refresh them in the background, first one replica, then three. Measured over a
 * fixed window per phase: refreshes per second, provider calls per integration (exactly one:
 * duplicates and calls whose answer was never stored both count), and the warm GetAccessToken
 * path while the refresher runs against the same path with nothing due. Then each replica walks
 * 10,000 distinct integrations (its cache full at the default bound) and its RSS is read.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import { loadOrCreateLocalSigningKey, signLocalToken } from "../src/auth/local-signing-key.js";
import { createLocalKeyringCipher } from "../src/crypto/local-keyring-cipher.js";
import { createLogger } from "../src/observability/logger.js";
import { startBrokerProcess, type BrokerProcess } from "../test/support/broker-process.js";
import { waitUntil } from "../test/support/wait-until.js";
import { GET_ACCESS_TOKEN, tokenRequest } from "./cold-path.js";
import { logLevel, UNLIMITED_TOKEN_CALLS } from "./support/broker.js";
import { localPostgresCpuMicros, pidCpuMicros, pidRssBytes, processCpuMicros } from "./support/cpu.js";
import { runLoad, type LoadResult } from "./support/load.js";
import type { BenchServer } from "./support/postgres.js";
import { startProviderLookalike, type ProviderLookalike } from "./support/provider-lookalike.js";
import { envInt, mib, ms, verdict, type BenchReport } from "./support/report.js";
import { replicaProcessOptions, walk } from "./support/replica-process.js";
import { seedIntegrations } from "./support/seed.js";

const PROVIDER_ID = "lookalike";
const CLIENT_SECRET = "bench-lookalike-secret";
/** Refreshes per second three replicas must sustain: 1,000,000 one-hour tokens kept fresh (with margin). */
const TARGET_PER_SECOND = 280;
const WARM_RATIO_TARGET = 0.8;
const RSS_LIMIT = 150 * 1024 * 1024;
const WARM_CALLERS = 16;

interface Phase {
  readonly replicas: number;
  readonly refreshes: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly warmWithout: LoadResult;
  readonly warmDuring: LoadResult;
  /**
   * CPU per refresh, µs: the broker processes together, local PostgreSQL, this process (look-alike
   * and load), over the part of the window before the warm load starts (refreshes alone).
   */
  readonly cpu: { readonly brokers: number; readonly database: number | undefined; readonly bench: number };
}

export async function benchRefreshCapacity(server: BenchServer): Promise<BenchReport> {
  const rows = envInt("BENCH_CAPACITY_ROWS", 100_000);
  const windowMs = envInt("BENCH_CAPACITY_WINDOW_MS", 20_000);
  const warmMs = envInt("BENCH_CAPACITY_WARM_MS", 5_000);
  const cachedWalk = envInt("BENCH_CAPACITY_CACHED", 10_000);
  // 0: the refresher unpaced (the default); otherwise each replica's `tokens.proactiveRefreshPerSecond`.
  const pacePerReplica = envInt("BENCH_CAPACITY_REFRESH_PER_SECOND", 0);
  const replicaProcess = await replicaProcessOptions();
  const databaseUrl = await server.createDatabase("capacity");
  const dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-bench-capacity-"));
  const provider: ProviderLookalike = await startProviderLookalike({ delayMs: 20, expiresInSeconds: 3600 });
  const replicas: BrokerProcess[] = [];
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const configPath = join(dataDir, "bench.yaml");
    await writeFile(
      configPath,
      [
        UNLIMITED_TOKEN_CALLS.trimEnd(),
        "providers:",
        `  ${PROVIDER_ID}:`,
        "    kind: oauth2",
        "    clientId: bench-client",
        "    clientSecret: ${BENCH_LOOKALIKE_SECRET}",
        "    clientAuthMethod: client_secret_post",
        "    defaultScopes: [read]",
        `    endpoints: { authorization: "${provider.origin}/authorize", token: "${provider.origin}/token" }`,
        // A pass every second: the refresher's capacity, not its idle interval, is measured.
        "tokens:",
        "  proactiveRefreshIntervalSeconds: 1",
        `  proactiveRefreshPerSecond: ${pacePerReplica}`,
        "",
      ].join("\n"),
    );
    const start = () =>
      startBrokerProcess(
        { BROKER_DATA_DIR: dataDir, BROKER_CONFIG: configPath, DATABASE_URL: databaseUrl, BENCH_LOOKALIKE_SECRET: CLIENT_SECRET, LOG_LEVEL: logLevel(), ...replicaProcess.env },
        90_000,
        180_000,
        { retainOutput: false, script: replicaProcess.script, nodeArgs: replicaProcess.nodeArgs },
      );
    // The first one migrates the database and creates the shared keyring and signing key.
    replicas.push(await start());

    const cipher = await createLocalKeyringCipher({ dataDir, logger: createLogger({ level: "silent" }) });
    const seeded = await seedIntegrations({ databaseUrl, cipher, count: rows + 1, label: "capacity", provider: PROVIDER_ID, scopes: ["read"] });
    const [warmId = "", ...dueIds] = seeded.ids;
    const dueTokens = seeded.refreshTokens.slice(1);
    const key = await loadOrCreateLocalSigningKey(dataDir);
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${await signLocalToken(key, { subject: "bench", kind: "service", roles: ["admin"] })}`);
    const warmRequest = tokenRequest(warmId);
    const warmLoad = (replica: BrokerProcess) =>
      runLoad({ address: replica.grpcAddress, path: GET_ACCESS_TOKEN, metadata, next: () => warmRequest, concurrency: WARM_CALLERS, durationMs: warmMs });

    // Due: expiring inside the 300 s window, issued an hour before (so the window, not half the
    // token's life, decides). Quiet: a day left, nothing to claim.
    const makeDue = () => sql`
      with due as (
        update token_sets set expires_at = now() + interval '4 minutes'
        where integration_id <> ${warmId} and version = 1 returning integration_id)
      update integrations set last_refreshed_at = now() - interval '1 hour' from due where id = due.integration_id`;
    const makeQuiet = async () => {
      await sql`update token_sets set expires_at = now() + interval '1 day' where integration_id <> ${warmId} and version = 1`;
      // Claims taken before the update finish (or find the day left and skip the provider).
      await waitUntil(
        async () => (await sql<{ n: number }[]>`select count(*)::int as n from token_sets where lease_owner is not null and lease_expires_at > now()`)[0]?.n === 0,
        "no refresh lease is held",
        60_000,
        100,
      );
    };

    const phase = async (count: number): Promise<Phase> => {
      while (replicas.length < count) replicas.push(...(await Promise.all(Array.from({ length: count - replicas.length }, start))));
      const [first] = replicas as [BrokerProcess];
      const warmWithout = await warmLoad(first);
      const cpuOf = () => ({
        brokers: replicas.reduce((sum, r) => sum + (pidCpuMicros(r.child.pid ?? 0) ?? 0), 0),
        database: localPostgresCpuMicros(),
        bench: processCpuMicros(),
      });
      await makeDue();
      const cpuBefore = cpuOf();
      const started = performance.now();
      // The warm path is measured in the middle of the window, with the refresher at full pace.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, (windowMs - warmMs) / 2)));
      const cpuAlone = cpuOf();
      const warmStarted = performance.now();
      const warmDuring = await warmLoad(first);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + windowMs - performance.now())));
      const ended = performance.now();
      const answered = (from: number, to: number) => provider.answeredAt.filter((t) => t >= from && t < to).length;
      const refreshes = answered(started, ended);
      const refreshesAlone = answered(started, warmStarted);
      await makeQuiet();
      // The warm load's CPU is not the refreshes': only the part of the window before it counts.
      const per = (after: number, before: number) => (after - before) / Math.max(1, refreshesAlone);
      const seconds = (ended - started) / 1000;
      return {
        replicas: count,
        refreshes,
        seconds,
        perSecond: refreshes / seconds,
        warmWithout,
        warmDuring,
        cpu: {
          brokers: per(cpuAlone.brokers, cpuBefore.brokers),
          database: cpuAlone.database === undefined || cpuBefore.database === undefined ? undefined : per(cpuAlone.database, cpuBefore.database),
          bench: per(cpuAlone.bench, cpuBefore.bench),
        },
      };
    };

    const one = await phase(1);
    const three = await phase(3);

    // Exactly once: every provider call's answer is stored, and no refresh token was sent twice.
    const refreshedRows = await sql<{ integration_id: string }[]>`select integration_id from token_sets where version > 1`;
    const refreshed = new Set(refreshedRows.map((row) => row.integration_id));
    let calls = 0;
    let duplicates = 0;
    let unstored = 0;
    let uncalled = 0;
    dueIds.forEach((id, i) => {
      const n = provider.calls.get(dueTokens[i] ?? "") ?? 0;
      calls += n;
      duplicates += Math.max(0, n - 1);
      if (n > 0 && !refreshed.has(id)) unstored += 1;
      if (n === 0 && refreshed.has(id)) uncalled += 1;
    });
    const exactlyOnce = refreshed.size > 0 && duplicates === 0 && unstored === 0 && uncalled === 0 && calls === refreshed.size;

    // Memory: each replica holds `cachedWalk` distinct tokens (its cache's default bound).
    const walkIds = seeded.ids.slice(0, cachedWalk);
    const walks = await Promise.all(replicas.map((replica) => walk(replica, walkIds, metadata)));
    const retried = walks.reduce((sum, w) => sum + w.retried, 0);
    const walkError = walks.find((w) => w.firstError !== undefined)?.firstError;
    const rss = replicas.map((replica) => pidRssBytes(replica.child.pid ?? 0));

    const ratio = (phase: Phase) => phase.warmDuring.perSecond / Math.max(1, phase.warmWithout.perSecond);
    const describe = (phase: Phase) => [
      `${phase.replicas} replica(s): ${phase.refreshes.toLocaleString("en-US")} refreshes in ${phase.seconds.toFixed(1)} s = ${phase.perSecond.toFixed(0)} refreshes/s ` +
        `= ${Math.round(phase.perSecond * 3600).toLocaleString("en-US")} integrations kept fresh with one-hour tokens`,
      `  CPU per refresh (before the warm load): brokers ${phase.cpu.brokers.toFixed(0)} µs${phase.cpu.database === undefined ? "" : `, PostgreSQL ${phase.cpu.database.toFixed(0)} µs`}, ` +
        `bench process (look-alike, load) ${phase.cpu.bench.toFixed(0)} µs; budget on 2 cores at this rate ${((2e6 / Math.max(1, phase.perSecond))).toFixed(0)} µs`,
      `  warm GetAccessToken (${WARM_CALLERS} callers, ${warmMs / 1000} s, replica 1): without ${phase.warmWithout.perSecond.toFixed(0)} req/s p99 ${ms(phase.warmWithout.p99)}; ` +
        `during ${phase.warmDuring.perSecond.toFixed(0)} req/s p99 ${ms(phase.warmDuring.p99)}${phase.warmDuring.errors > 0 ? ` (${phase.warmDuring.errors} errors)` : ""}; during/without ${ratio(phase).toFixed(2)}`,
    ];
    return {
      title: `(e) refresh capacity: ${rows.toLocaleString("en-US")} integrations due at once, provider look-alike answering in 20 ms, 1 then 3 broker processes on one PostgreSQL (${server.origin}); ${windowMs / 1000} s per phase; replicas run ${[...Object.entries(replicaProcess.env).map(([name, value]) => `${name}=${value}`), "node", ...replicaProcess.nodeArgs, replicaProcess.script].join(" ")}; refresher ${pacePerReplica === 0 ? "unpaced" : `paced at ${pacePerReplica}/s per replica`}`,
      lines: [
        `seeded ${rows.toLocaleString("en-US")} integrations + token sets (real ciphertexts) in ${(seeded.ms / 1000).toFixed(1)} s`,
        ...describe(one),
        ...describe(three),
        `provider calls: ${calls.toLocaleString("en-US")} for ${refreshed.size.toLocaleString("en-US")} refreshed integrations; duplicates ${duplicates}, answers never stored ${unstored}, stored without a call ${uncalled}`,
        `RSS per replica with ${walkIds.length.toLocaleString("en-US")} tokens cached: ${rss.map((bytes) => (bytes === undefined ? "n/a" : mib(bytes))).join(", ")}` +
          (retried > 0 ? ` (walks in parallel; ${retried} calls refused under load and asked again, first: ${walkError ?? ""})` : " (walks in parallel)"),
      ],
      checks: [
        { label: `3 replicas: ${three.perSecond.toFixed(0)} refreshes/s (1 replica: ${one.perSecond.toFixed(0)})`, target: `≥ ${TARGET_PER_SECOND}`, verdict: verdict(three.perSecond >= TARGET_PER_SECOND) },
        {
          label: `provider calls per refreshed integration: ${(calls / Math.max(1, refreshed.size)).toFixed(3)} (duplicates ${duplicates}, misses ${unstored + uncalled})`,
          target: "exactly 1",
          verdict: verdict(exactlyOnce),
        },
        {
          label: `warm throughput during/without refreshing: ${ratio(one).toFixed(2)} (1 replica), ${ratio(three).toFixed(2)} (3 replicas)`,
          target: `≥ ${WARM_RATIO_TARGET}`,
          verdict: verdict(ratio(one) >= WARM_RATIO_TARGET && ratio(three) >= WARM_RATIO_TARGET),
        },
        {
          label: `RSS per replica (/proc VmRSS) with ${walkIds.length.toLocaleString("en-US")} tokens cached: max ${mib(Math.max(...rss.map((bytes) => bytes ?? Number.POSITIVE_INFINITY)))}`,
          target: `≤ ${mib(RSS_LIMIT)}`,
          verdict: verdict(rss.every((bytes) => bytes !== undefined && bytes <= RSS_LIMIT)),
        },
      ],
    };
  } finally {
    await Promise.all(replicas.map((replica) => replica.stop()));
    await sql.end();
    await provider.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}
