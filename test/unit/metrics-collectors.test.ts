/**
 * Metrics filled at scrape time or from events: the integrations gauge (read from the database,
 * cached between scrapes, emptied when the count fails) and the circuit breaker state gauges.
 */
import { describe, expect, it } from "vitest";
import { createMetrics, type IntegrationCountSample } from "../../src/observability/metrics.js";
import { manualClock } from "../support/manual-clock.js";
import { parseExposition, series } from "../support/prometheus-text.js";

async function scrape(metrics: ReturnType<typeof createMetrics>, name: string): Promise<Record<string, number>> {
  return series(parseExposition((await metrics.render()).body), name);
}

describe("oauth_broker_integrations", () => {
  it("reports each provider's counts with every status present, zeros included", async () => {
    const rows: IntegrationCountSample[] = [
      { provider: "google", status: "active", count: 7 },
      { provider: "google", status: "needs_reauth", count: 2 },
      { provider: "notion", status: "deleted", count: 1 },
    ];
    const metrics = createMetrics({ integrationCounts: async () => rows });
    expect(await scrape(metrics, "oauth_broker_integrations")).toEqual({
      "provider=google,status=active": 7,
      "provider=google,status=needs_reauth": 2,
      "provider=google,status=deleted": 0,
      "provider=notion,status=active": 0,
      "provider=notion,status=needs_reauth": 0,
      "provider=notion,status=deleted": 1,
    });
  });

  it("reports the active integrations without a refresh token per provider, zeros included", async () => {
    const rows: IntegrationCountSample[] = [
      { provider: "oidc", status: "active", count: 7, withoutRefreshToken: 3 },
      { provider: "oidc", status: "needs_reauth", count: 2, withoutRefreshToken: 2 },
      { provider: "notion", status: "active", count: 1, withoutRefreshToken: 0 },
      { provider: "google", status: "deleted", count: 1 },
    ];
    const metrics = createMetrics({ integrationCounts: async () => rows });
    expect(await scrape(metrics, "oauth_broker_integrations_without_refresh_token")).toEqual({ "provider=oidc": 3, "provider=notion": 0, "provider=google": 0 });
  });

  it("queries at most once per TTL, once for concurrent scrapes, and drops providers that are gone", async () => {
    const clock = manualClock(0);
    let queries = 0;
    let rows: IntegrationCountSample[] = [{ provider: "google", status: "active", count: 1 }];
    const metrics = createMetrics({
      integrationCountsTtlMs: 5_000,
      now: clock.nowMs,
      integrationCounts: async () => {
        queries += 1;
        await new Promise((resolve) => setTimeout(resolve, 5));
        return rows;
      },
    });
    await Promise.all([metrics.render(), metrics.render(), metrics.render()]);
    expect(queries).toBe(1);
    rows = [{ provider: "notion", status: "active", count: 3 }];
    clock.advance(4_999);
    expect(await scrape(metrics, "oauth_broker_integrations")).toMatchObject({ "provider=google,status=active": 1 });
    expect(queries).toBe(1);
    clock.advance(1);
    expect(await scrape(metrics, "oauth_broker_integrations")).toEqual({
      "provider=notion,status=active": 3,
      "provider=notion,status=needs_reauth": 0,
      "provider=notion,status=deleted": 0,
    });
    expect(queries).toBe(2);
  });

  it("empties the gauge and reports the error when the count fails, and tries again at the next scrape", async () => {
    const errors: unknown[] = [];
    let fail = false;
    const clock = manualClock(0);
    const metrics = createMetrics({
      now: clock.nowMs,
      integrationCountsTtlMs: 1_000,
      onCollectError: (error) => errors.push(error),
      integrationCounts: async () => {
        if (fail) throw new Error("database unavailable");
        return [{ provider: "google", status: "active", count: 4 }];
      },
    });
    expect(await scrape(metrics, "oauth_broker_integrations")).toMatchObject({ "provider=google,status=active": 4 });
    fail = true;
    clock.advance(1_000);
    const { body } = await metrics.render();
    expect(series(parseExposition(body), "oauth_broker_integrations")).toEqual({});
    // The rest of the exposition is unaffected.
    expect(body).toContain("# TYPE grpc_server_handled_total counter");
    expect(errors).toHaveLength(1);
    fail = false;
    expect(await scrape(metrics, "oauth_broker_integrations")).toMatchObject({ "provider=google,status=active": 4 });
  });

  it("has no series without a count source", async () => {
    const metrics = createMetrics();
    const { body } = await metrics.render();
    expect(body).toContain("# TYPE oauth_broker_integrations gauge");
    expect(series(parseExposition(body), "oauth_broker_integrations")).toEqual({});
  });
});

describe("circuit breaker gauges", () => {
  it("marks the current state 1 and the others 0, and keeps oauth_broker_provider_circuit_open in step", async () => {
    const metrics = createMetrics();
    metrics.setCircuitState("google", "open");
    metrics.setCircuitState("notion", "open");
    metrics.setCircuitState("notion", "half_open");
    expect(await scrape(metrics, "oauth_broker_provider_circuit_state")).toEqual({
      "provider=google,state=closed": 0,
      "provider=google,state=open": 1,
      "provider=google,state=half_open": 0,
      "provider=notion,state=closed": 0,
      "provider=notion,state=open": 0,
      "provider=notion,state=half_open": 1,
    });
    expect(await scrape(metrics, "oauth_broker_provider_circuit_open")).toEqual({ "provider=google": 1, "provider=notion": 0 });
  });
});
