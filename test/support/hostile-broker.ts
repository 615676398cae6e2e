/**
 * The whole broker in-process (real PostgreSQL, sandbox provider, local keyring) for the
 * hostile-input tests, with an attacker's credentials, a bystander's, and the measurements
 * those tests take around each attack: the bystander's call time before and during it, the
 * process's resident memory, and the broker's health after it.
 */
import type { RunningBroker } from "../../src/server.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { grpcClient, unary } from "./grpc-client.js";
import { startInProcessBroker } from "./in-process-broker.js";
import { captureLogger, type CapturedLog } from "./log-capture.js";
import type { Target } from "./raw-rpc.js";
import { awaitedLater } from "./wait-until.js";

export interface HostileBroker extends Target {
  readonly broker: RunningBroker;
  readonly log: CapturedLog;
  /** `Bearer …` of an admin service: authenticated, allowed every RPC. */
  readonly attacker: string;
  /** `Bearer …` of another service, whose normal calls must not suffer. */
  readonly bystander: string;
  /** One normal call by the bystander (ListProviders, alternately over each listener); its duration in ms. */
  normalCall(): Promise<number>;
  close(): Promise<void>;
}

/** Generous rate limits: what is measured is the edge, not the token buckets. */
const CONFIG = `sandbox:
  enabled: true
tokens:
  proactiveRefreshIntervalSeconds: 3600
limits:
  perPrincipal:
    token: { ratePerSecond: 100000, burst: 100000 }
    read: { ratePerSecond: 100000, burst: 100000 }
    write: { ratePerSecond: 100000, burst: 100000 }
    admin: { ratePerSecond: 100000, burst: 100000 }
  startAuthorizationPerUser: { ratePerSecond: 100000, burst: 100000 }
`;

export async function startHostileBroker(): Promise<HostileBroker> {
  const db: TestDatabase = await createTestDatabase();
  const captured = captureLogger();
  const running = await startInProcessBroker({ yaml: CONFIG, databaseUrl: db.url, logger: captured.logger, name: "oauth-broker-hostile" });
  const { broker, httpUrl } = running;
  const attacker = `Bearer ${await running.token("mallory", "service", ["admin"])}`;
  const bystander = `Bearer ${await running.token("billing", "service", ["admin"])}`;
  const client = grpcClient(`127.0.0.1:${broker.grpcPort}`);
  let turn = 0;
  const normalCall = async (): Promise<number> => {
    const started = performance.now();
    if (turn++ % 2 === 0) {
      await unary(client, ProviderService.method.listProviders, {}, { metadata: { authorization: bystander } });
    } else {
      const res = await fetch(`${httpUrl}/oauthbroker.v1.ProviderService/ListProviders`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: bystander },
        body: "{}",
      });
      if (res.status !== 200) throw new Error(`ListProviders answered ${res.status}`);
      await res.arrayBuffer();
    }
    return performance.now() - started;
  };
  return {
    broker,
    httpPort: broker.httpPort,
    grpcPort: broker.grpcPort,
    log: captured.log,
    attacker,
    bystander,
    normalCall,
    async close() {
      client.close();
      await running.stop();
      await db.drop();
    },
  };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** The bystander's median call time over `count` calls made one after another. */
export async function medianCall(target: HostileBroker, count: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) times.push(await target.normalCall());
  return median(times);
}

export interface AttackMeasurement<T> {
  readonly results: T[];
  /** Median bystander call time during the attack over the same before it. */
  readonly slowdown: number;
  /** Resident memory after the attack minus before it, in bytes. */
  readonly rssGrowth: number;
}

/**
 * Runs `attacks` concurrently, `rounds` times over, while the bystander keeps calling (at least
 * five calls, until every attack is answered), and measures the slowdown against the same
 * calls just before and just after it: the larger of those two medians, so that load other
 * processes put on a shared machine while the test runs is not taken for the attack's.
 */
export async function underAttack<T>(target: HostileBroker, attacks: ReadonlyArray<() => Promise<T>>, rounds = 1): Promise<AttackMeasurement<T>> {
  const before = await medianCall(target, 9);
  const rssBefore = process.memoryUsage().rss;
  let finished = false;
  const attack = awaitedLater(
    (async () => {
      const all: T[] = [];
      for (let round = 0; round < rounds; round++) all.push(...(await Promise.all(attacks.map((run) => run()))));
      return all;
    })().finally(() => {
      finished = true;
    }),
  );
  const during: number[] = [];
  while (!finished || during.length < 5) during.push(await target.normalCall());
  const results = await attack;
  const rssGrowth = process.memoryUsage().rss - rssBefore;
  const after = await medianCall(target, 9);
  // A floor of 2 ms: a loopback call on a loaded 2-core machine varies by that much on its own,
  // and below it the ratio measures that noise rather than the broker.
  return { results, slowdown: median(during) / Math.max(before, after, 2), rssGrowth };
}
