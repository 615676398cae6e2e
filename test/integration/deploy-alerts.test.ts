/**
 * deploy/prometheus/alerts.yaml: alerting rules over metrics the broker exports, each with a
 * severity, a summary, a description and a runbook whose anchor is a heading of the README.
 * Prometheus's own checks of the file (`promtool check rules`, the rule unit tests, evaluation
 * against a real scrape) are in test/integration/deploy-promtool.test.ts and
 * test/e2e/prometheus-scrape.test.ts.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { createMetrics } from "../../src/observability/metrics.js";
import { exposedSeriesNames, selectedMetricNames } from "../support/metric-names.js";
import { headingAnchors } from "../support/markdown-anchors.js";

interface Rule {
  readonly alert?: unknown;
  readonly record?: unknown;
  readonly expr?: unknown;
  readonly for?: unknown;
  readonly keep_firing_for?: unknown;
  readonly labels?: Record<string, unknown>;
  readonly annotations?: Record<string, unknown>;
}

interface RuleFile {
  readonly groups: ReadonlyArray<{ readonly name: unknown; readonly interval?: unknown; readonly rules: readonly Rule[] }>;
}

const DURATION = /^(?:\d+(?:ms|[smhdwy]))+$/;
const RULE_KEYS = new Set(["alert", "expr", "for", "keep_firing_for", "labels", "annotations"]);
const root = new URL("../../", import.meta.url);
const file = parse(readFileSync(new URL("deploy/prometheus/alerts.yaml", root), "utf8")) as RuleFile;
const rules = file.groups.flatMap((group) => group.rules);
const exported = exposedSeriesNames(createMetrics().registry);

describe("the Prometheus alert rules", () => {
  it("follow the rule file structure: named groups of alerting rules with known keys", () => {
    expect(Object.keys(file)).toEqual(["groups"]);
    const names = file.groups.map((group) => group.name);
    expect(new Set(names).size).toBe(names.length);
    for (const group of file.groups) {
      expect(typeof group.name).toBe("string");
      expect(Object.keys(group).every((key) => ["name", "interval", "rules", "limit"].includes(key)), String(group.name)).toBe(true);
      if (group.interval !== undefined) expect(String(group.interval)).toMatch(DURATION);
      expect(group.rules.length).toBeGreaterThan(0);
    }
    for (const rule of rules) {
      for (const key of Object.keys(rule)) expect(RULE_KEYS.has(key), `${String(rule.alert)}: unknown key ${key}`).toBe(true);
    }
  });

  it("covers the conditions operators are paged for", () => {
    expect(rules.map((rule) => rule.alert).sort()).toEqual([
      "OAuthBrokerAuditChainBroken",
      "OAuthBrokerAuditWriteFailures",
      "OAuthBrokerKeyServiceErrors",
      "OAuthBrokerKeyServiceUnavailable",
      "OAuthBrokerNeedsReauthRising",
      "OAuthBrokerProviderCircuitOpen",
      "OAuthBrokerProviderInvalidClient",
      "OAuthBrokerRefreshFailureRatioHigh",
      "OAuthBrokerRpcErrorRatioHigh",
    ]);
  });

  it.each(rules.map((rule) => [String(rule.alert), rule] as const))("%s has an expression over broker metrics, a for, a severity and annotations", (name, rule) => {
    expect(name).toMatch(/^[A-Z][A-Za-z0-9]+$/);
    expect(typeof rule.expr).toBe("string");
    const metrics = selectedMetricNames(String(rule.expr));
    expect(metrics.size, `${name} selects no broker metric`).toBeGreaterThan(0);
    for (const metric of metrics) expect(exported.has(metric), `${name} uses ${metric}, which the broker does not export`).toBe(true);
    expect(String(rule.for)).toMatch(DURATION);
    if (rule.keep_firing_for !== undefined) expect(String(rule.keep_firing_for)).toMatch(DURATION);
    expect(["critical", "warning", "info"]).toContain(rule.labels?.["severity"]);
    for (const value of Object.values(rule.labels ?? {})) expect(typeof value).toBe("string");
    const annotations = rule.annotations ?? {};
    for (const key of ["summary", "description", "runbook_url"]) {
      expect(typeof annotations[key], `${name}: ${key}`).toBe("string");
      expect(String(annotations[key]).trim(), `${name}: ${key}`).not.toBe("");
    }
    // Templates are balanced, and only name labels the expression keeps.
    for (const text of Object.values(annotations).map(String)) {
      expect(text.split("{{").length, `${name}: unbalanced template`).toBe(text.split("}}").length);
      for (const [, label] of text.matchAll(/\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)/g)) {
        expect(String(rule.expr), `${name}: annotation uses $labels.${label ?? ""}`).toMatch(new RegExp(`\\b${label ?? ""}\\b`));
      }
    }
  });

  it("points every runbook_url at a heading of the README", () => {
    const anchors = headingAnchors(readFileSync(new URL("README.md", root), "utf8"));
    for (const rule of rules) {
      const url = new URL(String(rule.annotations?.["runbook_url"]));
      expect(url.protocol).toBe("https:");
      expect(url.pathname, String(rule.alert)).toMatch(/\/README\.md$/);
      expect(anchors.has(url.hash.slice(1)), `${String(rule.alert)}: README.md has no heading for ${url.hash}`).toBe(true);
    }
  });
});
