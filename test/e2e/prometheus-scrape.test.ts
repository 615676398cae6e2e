/**
 * The dashboard and the alerts against a real Prometheus scraping the real broker: the broker
 * runs as a process (sandbox provider, local keyring, the test's PostgreSQL database), Debian's
 * `prometheus` scrapes it every second and evaluates deploy/prometheus/alerts.yaml, and scripted
 * traffic runs twice (so every series exists before it grows and rates have two samples): a
 * browser connects two accounts, a service gets a token cold and warm, an operator forces a
 * refresh, a replayed refresh token is refused by the provider, a call names a missing
 * integration, an account is deleted. Then Prometheus evaluates every panel query of the
 * Grafana dashboard over the run, and every alert; `promtool check metrics` lints the scrape.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { parse } from "yaml";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { createLogger } from "../../src/observability/logger.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import type { BrokerProcess } from "../support/broker-process.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { freePort } from "../support/free-port.js";
import { selectedMetricNames } from "../support/metric-names.js";
import { waitUntil } from "../support/peer-connect.js";
import { declaredFamilies, parseExposition } from "../support/prometheus-text.js";
import { startPrometheus, type MatrixSeries, type QueryResult, type RunningPrometheus } from "../support/prometheus-server.js";
import { runPromtool, skipWithout } from "../support/prometheus-tools.js";
import { connectSandboxAccount } from "../support/browser-flow.js";

interface Panel {
  readonly type: string;
  readonly title: string;
  readonly targets?: ReadonlyArray<{ readonly refId: string; readonly expr: string; readonly legendFormat?: string }>;
}

interface RuleFile {
  readonly groups: ReadonlyArray<{ readonly rules: ReadonlyArray<{ readonly alert: string; readonly expr: string }> }>;
}

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ALERTS_FILE = join(ROOT, "deploy/prometheus/alerts.yaml");
const JOB = "oauth-broker";
const dashboard = JSON.parse(await readFile(join(ROOT, "deploy/grafana/oauth-broker-dashboard.json"), "utf8")) as { panels: readonly Panel[] };
const panels = dashboard.panels.filter((panel) => panel.type !== "row");
const alerts = (parse(await readFile(ALERTS_FILE, "utf8")) as RuleFile).groups.flatMap((group) => group.rules);

/** Panels this traffic cannot feed, and why; every other panel must show data. */
const QUIET_PANELS: Readonly<Record<string, string>> = {
  "Circuit breaker state": "the sandbox answers every call, so no breaker ever changes state and the gauge has no series",
};

/**
 * What Grafana substitutes with a 1 s step on a 1 s scrape interval: `$__rate_interval` is
 * max(step + scrape interval, 4 × scrape interval) = 4 s, `$instance` is the "All" value.
 */
const VARIABLES: Readonly<Record<string, string>> = { job: JOB, instance: ".*", __rate_interval: "4s", __interval: "1s" };

function withGrafanaVariables(expr: string): string {
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (match, braced: string | undefined, bare: string | undefined) => {
    const value = VARIABLES[braced ?? bare ?? ""];
    if (value === undefined) throw new Error(`no value for the Grafana variable ${match} in ${expr}`);
    return value;
  });
}

let db: TestDatabase;
let data: BrokerDataDir | undefined;
let broker: BrokerProcess;
let prometheus: RunningPrometheus;
let from: number;
let exposition: string;

/** The broker's own count of handled RPCs, read from its /metrics. */
async function handledByBroker(): Promise<number> {
  const text = await (await fetch(`${broker.httpUrl}/metrics`)).text();
  return parseExposition(text)
    .filter((sample) => sample.name === "grpc_server_handled_total")
    .reduce((sum, sample) => sum + sample.value, 0);
}

/** Waits until Prometheus holds a sample taken after everything the broker has handled so far. */
async function waitForScrapeOfTraffic(): Promise<void> {
  const handled = await handledByBroker();
  await waitUntil(async () => {
    const [sample] = await prometheus.vector(`sum(grpc_server_handled_total{job="${JOB}"})`);
    return Number(sample?.value[1]) >= handled;
  }, `Prometheus has scraped ${handled} handled RPCs`, 30_000, 200);
}

async function scriptedTraffic(round: number, userToken: string, adminToken: string): Promise<void> {
  const client = grpcClient(broker.grpcAddress);
  const asAdmin = { metadata: { authorization: `Bearer ${adminToken}` } };
  try {
    const kept = await connectSandboxAccount(broker.httpUrl, userToken, `kept-${round}-${randomBytes(3).toString("hex")}`);
    const deleted = await connectSandboxAccount(broker.httpUrl, userToken, `deleted-${round}-${randomBytes(3).toString("hex")}`);
    // Cold (a cache miss: PostgreSQL and the keyring), then warm (the in-memory cache).
    for (let i = 0; i < 2; i++) await unary(client, TokenService.method.getAccessToken, { integrationId: kept, minValidFor: durationFromMs(30_000) }, asAdmin);
    const [before] = await db.sql<{ refresh_token_ciphertext: string }[]>`
      select refresh_token_ciphertext from token_sets where integration_id = ${kept}`;
    const refreshed = await unary(client, IntegrationService.method.refreshIntegration, { id: kept }, asAdmin);
    expect(refreshed.response.refreshed).toBe(true);
    // The provider refuses the rotated-away refresh token (invalid_grant): NEEDS_REAUTH.
    await db.sql`update token_sets set refresh_token_ciphertext = ${before!.refresh_token_ciphertext} where integration_id = ${kept}`;
    const refused = (await unary(client, IntegrationService.method.refreshIntegration, { id: kept }, asAdmin).catch((e: unknown) => e)) as GrpcFailure;
    expect(refused.code).toBe(Code.FailedPrecondition);
    const missing = (await unary(client, TokenService.method.getAccessToken, { integrationId: "00000000-0000-4000-8000-00000000dead" }, asAdmin).catch(
      (e: unknown) => e,
    )) as GrpcFailure;
    expect(missing.code).toBe(Code.NotFound);
    await unary(client, IntegrationService.method.deleteIntegration, { id: deleted }, asAdmin);
  } finally {
    client.close();
  }
}

/** The panel query's answer over the run, as Grafana asks for it (a range query, 1 s step). */
async function panelRange(expr: string): Promise<{ httpStatus: number; error?: string; series: MatrixSeries[] }> {
  const answer = await prometheus.api<QueryResult<MatrixSeries[]>>("/api/v1/query_range", {
    query: withGrafanaVariables(expr),
    start: String(from),
    end: String(Date.now() / 1000),
    step: "1",
  });
  return { httpStatus: answer.httpStatus, ...(answer.error === undefined ? {} : { error: answer.error }), series: answer.data?.result ?? [] };
}

/** What each panel answered, for the README's figures: `panel — legend: peak … last …`. */
const answered: string[] = [];

function legend(format: string | undefined, metric: Readonly<Record<string, string>>): string {
  return (format ?? "").replace(/\{\{\s*(\w+)\s*\}\}/g, (_, name: string) => metric[name] ?? "");
}

const figure = (value: number) => (Number.isInteger(value) ? String(value) : value.toPrecision(3));

const numbers = (series: MatrixSeries) => series.values.map(([, value]) => Number(value)).filter((value) => !Number.isNaN(value));

describe.skipIf(skipWithout("prometheus", "promtool"))("a real Prometheus scraping the broker", () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    data = await createBrokerDataDir("oauth-broker-e2e-prometheus", createLogger({ level: "silent" }));
    await data.writeConfig(["sandbox:", "  enabled: true"]);
    // The sandbox's issuer and the redirect URI name the public URL, so the port is fixed up front.
    const port = await freePort();
    broker = await data.startBroker({ DATABASE_URL: db.url, BROKER_HTTP_ADDR: `127.0.0.1:${port}`, BROKER_PUBLIC_URL: `http://127.0.0.1:${port}` }, 90_000);
    prometheus = await startPrometheus({ job: JOB, targets: [`127.0.0.1:${port}`], ruleFiles: [ALERTS_FILE], scrapeIntervalSeconds: 1 });
    await waitUntil(async () => {
      const answer = await prometheus.api<{ activeTargets: Array<{ health: string }> }>("/api/v1/targets");
      return answer.data?.activeTargets.length === 1 && answer.data.activeTargets[0]?.health === "up";
    }, "the broker's target is up", 30_000, 200);
    await waitUntil(async () => (await prometheus.vector(`oauth_broker_audit_chain_intact{job="${JOB}"}`)).length === 1, "a broker series appears", 30_000, 200);
    from = Date.now() / 1000;

    const userToken = await data.token(`prom-user-${randomBytes(4).toString("hex")}`, "user");
    for (const round of [1, 2]) {
      await scriptedTraffic(round, userToken, data.adminToken);
      await waitForScrapeOfTraffic();
      // The integrations gauge is counted at most every 5 s: without a sample of each round's
      // count, the whole run could fall between two counts and delta() would have one sample.
      await waitUntil(async () => {
        const [sample] = await prometheus.vector(`max(oauth_broker_integrations{job="${JOB}", status="needs_reauth"})`);
        return Number(sample?.value[1]) === round;
      }, `Prometheus sees ${round} integrations that need re-authorization`, 30_000, 200);
    }
    // Every alert rule evaluated at least once after the traffic.
    const evaluatedAfter = Date.now();
    await waitUntil(async () => {
      const answer = await prometheus.api<{ groups: Array<{ rules: Array<{ lastEvaluation: string }> }> }>("/api/v1/rules");
      const rules = answer.data?.groups.flatMap((group) => group.rules) ?? [];
      return rules.length === alerts.length && rules.every((rule) => Date.parse(rule.lastEvaluation) > evaluatedAfter);
    }, "every alert rule was evaluated after the traffic", 30_000, 200);
    exposition = await (await fetch(`${broker.httpUrl}/metrics`)).text();
  }, 240_000);

  afterAll(async () => {
    if (answered.length > 0) console.info(`What the dashboard's panels answered over the run:\n${answered.join("\n")}`);
    await prometheus?.stop();
    if (broker !== undefined) expect(await broker.stop()).toBe(0);
    await db?.drop();
    await data?.remove();
  });

  it("promtool check metrics finds nothing to fix in the broker's exposition", async () => {
    const run = await runPromtool(["check", "metrics"], exposition);
    expect(run.output).toBe("");
    expect(run.code).toBe(0);
  });

  it("selects only metrics the broker exposes, on the dashboard and in the alerts", () => {
    const exposed = new Set<string>();
    for (const [name, type] of declaredFamilies(exposition)) {
      for (const suffix of type === "histogram" ? ["_bucket", "_sum", "_count"] : type === "summary" ? ["", "_sum", "_count"] : [""]) exposed.add(`${name}${suffix}`);
    }
    const uses = [...panels.flatMap((panel) => (panel.targets ?? []).map((t) => ({ where: panel.title, expr: t.expr }))), ...alerts.map((a) => ({ where: a.alert, expr: a.expr }))];
    for (const { where, expr } of uses) {
      const names = selectedMetricNames(expr);
      expect(names.size, `${where} selects no broker metric`).toBeGreaterThan(0);
      for (const name of names) expect(exposed.has(name), `${where} uses ${name}, which the broker does not expose`).toBe(true);
    }
  });

  it("finds the broker's job and instance for the dashboard's variables", async () => {
    const jobs = await prometheus.api<string[]>("/api/v1/label/job/values", { "match[]": "grpc_server_handled_total" });
    expect(jobs.data).toEqual([JOB]);
    const instances = await prometheus.api<string[]>("/api/v1/label/instance/values", { "match[]": `grpc_server_handled_total{job=~"${JOB}"}` });
    expect(instances.data).toEqual([new URL(broker.httpUrl).host]);
  });

  it.each(panels.map((panel) => [panel.title, panel] as const))("panel %s: every query parses and shows what the traffic fed it", async (title, panel) => {
    expect(panel.targets?.length, title).toBeGreaterThan(0);
    for (const target of panel.targets ?? []) {
      const answer = await panelRange(target.expr);
      expect(answer.httpStatus, `${title} (${target.refId}): ${answer.error ?? ""}`).toBe(200);
      const shown = answer.series.filter((series) => numbers(series).length > 0);
      for (const series of shown) {
        const values = numbers(series);
        answered.push(`${title} — ${legend(target.legendFormat, series.metric)}: peak ${figure(Math.max(...values))}, last ${figure(values.at(-1) ?? Number.NaN)}`);
      }
      if (title in QUIET_PANELS) continue;
      expect(shown.length, `panel "${title}" (${target.refId}) shows no data after traffic that feeds it: ${target.expr}`).toBeGreaterThan(0);
    }
  });

  it("evaluates every alert and fires none on healthy traffic", async () => {
    for (const alert of alerts) {
      const answer = await prometheus.api<QueryResult<unknown[]>>("/api/v1/query", { query: alert.expr });
      expect(answer.status, `${alert.alert}: ${answer.error ?? ""}`).toBe("success");
      expect(answer.data?.result, alert.alert).toEqual([]);
    }
    const rules = await prometheus.api<{ groups: Array<{ rules: Array<{ name: string; health: string; state: string; lastError?: string }> }> }>("/api/v1/rules");
    const loaded = rules.data?.groups.flatMap((group) => group.rules) ?? [];
    expect(loaded.map((rule) => rule.name).sort()).toEqual(alerts.map((alert) => alert.alert).sort());
    for (const rule of loaded) {
      expect(rule.health, `${rule.name}: ${rule.lastError ?? ""}`).toBe("ok");
      expect(rule.state, rule.name).toBe("inactive");
    }
  });
});
