/**
 * deploy/grafana/oauth-broker-dashboard.json: importable (structure Grafana 10/11 expects), every
 * query over metrics the broker exports, and every broker metric on some panel. That Prometheus
 * parses every query and answers it with data after traffic: test/e2e/prometheus-scrape.test.ts.
 */
import { readFileSync } from "node:fs";
import { Histogram } from "prom-client";
import { describe, expect, it } from "vitest";
import { createMetrics } from "../../src/observability/metrics.js";
import { exposedSeriesNames, selectedMetricNames } from "../support/metric-names.js";

interface GridPos {
  readonly h: number;
  readonly w: number;
  readonly x: number;
  readonly y: number;
}

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: GridPos;
  readonly datasource?: { readonly type: string; readonly uid: string };
  readonly targets?: ReadonlyArray<{ readonly refId: string; readonly expr: string; readonly datasource?: { readonly uid: string } }>;
  readonly panels?: readonly Panel[];
}

interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly schemaVersion: number;
  readonly templating: { readonly list: ReadonlyArray<{ readonly name: string; readonly type: string; readonly query: unknown }> };
  readonly panels: readonly Panel[];
}

const dashboard = JSON.parse(readFileSync(new URL("../../deploy/grafana/oauth-broker-dashboard.json", import.meta.url), "utf8")) as Dashboard;
const panels = dashboard.panels.filter((panel) => panel.type !== "row");
const queries = panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })));
const exported = exposedSeriesNames(createMetrics().registry);

describe("the Grafana dashboard", () => {
  it("is a dashboard Grafana imports: uid, title, schema version, a Prometheus datasource variable", () => {
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.title).not.toBe("");
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }));
    for (const variable of dashboard.templating.list.filter((v) => v.type === "query")) {
      const query = variable.query as { query: string };
      const selector = /^label_values\((.*),\s*\w+\)$/.exec(query.query)?.[1] ?? "";
      for (const name of selectedMetricNames(selector)) expect(exported.has(name), `variable ${variable.name} uses ${name}`).toBe(true);
      expect(selectedMetricNames(selector).size, variable.name).toBe(1);
    }
  });

  it("gives every panel a unique id and a place on the 24-column grid, without overlaps", () => {
    const ids = dashboard.panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Map<string, string>();
    for (const panel of dashboard.panels) {
      expect(Number.isInteger(panel.id) && panel.id > 0, panel.title).toBe(true);
      const { h, w, x, y } = panel.gridPos;
      for (const n of [h, w, x, y]) expect(Number.isInteger(n) && n >= 0, `${panel.title} gridPos`).toBe(true);
      expect(h > 0 && w > 0 && x + w <= 24, `${panel.title} gridPos`).toBe(true);
      for (let row = y; row < y + h; row++) {
        for (let column = x; column < x + w; column++) {
          const key = `${row}:${column}`;
          expect(cells.get(key), `${panel.title} overlaps ${cells.get(key)}`).toBeUndefined();
          cells.set(key, panel.title);
        }
      }
    }
  });

  it("queries the selected datasource from every panel and every target", () => {
    expect(panels.length).toBeGreaterThan(10);
    for (const panel of panels) {
      expect(["timeseries", "stat", "state-timeline", "gauge", "table", "bargauge"], panel.title).toContain(panel.type);
      expect(panel.datasource, panel.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      const refIds = (panel.targets ?? []).map((target) => target.refId);
      expect(new Set(refIds).size, panel.title).toBe(refIds.length);
      for (const target of panel.targets ?? []) {
        expect(target.expr.trim(), panel.title).not.toBe("");
        expect(target.datasource?.uid, panel.title).toBe("${datasource}");
      }
    }
    for (const row of dashboard.panels.filter((panel) => panel.type === "row")) {
      expect(row.targets, row.title).toBeUndefined();
      expect(row.panels, row.title).toEqual([]);
    }
  });

  it("queries only metrics the broker exports", () => {
    for (const { panel, expr } of queries) {
      const names = selectedMetricNames(expr);
      expect(names.size, `${panel} selects no broker metric: ${expr}`).toBeGreaterThan(0);
      for (const name of names) expect(exported.has(name), `${panel} uses ${name}, which the broker does not export`).toBe(true);
    }
  });

  it("shows every broker metric somewhere", () => {
    const used = new Set(queries.flatMap(({ expr }) => [...selectedMetricNames(expr)]));
    const families = createMetrics()
      .registry.getMetricsAsArray()
      .filter((metric) => metric.name.startsWith("oauth_broker_") || metric.name.startsWith("grpc_server_"));
    expect(families.length).toBeGreaterThan(10);
    for (const metric of families) {
      const series = metric instanceof Histogram ? ["_bucket", "_count", "_sum"].map((suffix) => `${metric.name}${suffix}`) : [metric.name];
      expect(series.some((s) => used.has(s)), `no panel shows ${metric.name}`).toBe(true);
    }
  });
});
