/**
 * The alert rules as Prometheus's own tool sees them: `promtool check rules` on every rule file
 * in deploy/prometheus, and `promtool test rules` on every unit test file next to them, in which
 * each alert fires on a failing target once its `for` has passed, and not a minute earlier, and
 * stays quiet on a healthy target beside it.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { runPromtool, skipWithout } from "../support/prometheus-tools.js";

interface RuleFile {
  readonly groups: ReadonlyArray<{ readonly rules: ReadonlyArray<{ readonly alert?: string; readonly for?: string }> }>;
}

interface RuleTestFile {
  readonly rule_files: readonly string[];
  readonly evaluation_interval?: string;
  readonly tests: ReadonlyArray<{
    readonly name?: string;
    readonly input_series: ReadonlyArray<{ readonly series: string }>;
    readonly alert_rule_test?: ReadonlyArray<{
      readonly eval_time: string;
      readonly alertname: string;
      readonly exp_alerts: ReadonlyArray<{ readonly exp_labels?: Record<string, string> }>;
    }>;
  }>;
}

const DIR = fileURLToPath(new URL("../../deploy/prometheus/", import.meta.url));
const UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_536_000_000 };

/** Milliseconds of a Prometheus duration such as `1h30m`. */
function durationMs(text: string): number {
  let total = 0;
  for (const [, amount = "", unit = ""] of text.matchAll(/(\d+)(ms|[smhdwy])/g)) total += Number(amount) * (UNITS_MS[unit] ?? Number.NaN);
  return total;
}

function seriesLabels(selector: string): Record<string, string> {
  return Object.fromEntries([...selector.matchAll(/([a-zA-Z_]\w*)="([^"]*)"/g)].map(([, key = "", value = ""]) => [key, value]));
}

const files = await readdir(DIR);
const ruleFiles = files.filter((name) => name.endsWith(".yaml") && !name.endsWith(".test.yaml")).sort();
const testFiles = files.filter((name) => name.endsWith(".test.yaml")).sort();

describe.skipIf(skipWithout("promtool"))("promtool on deploy/prometheus", () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "oauth-broker-promtool-"));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it("finds the rule files and their unit tests", () => {
    expect(ruleFiles).toContain("alerts.yaml");
    expect(testFiles).toContain("alerts.test.yaml");
  });

  it.each(ruleFiles)("check rules accepts %s with every rule counted", async (name) => {
    const file = parse(await readFile(join(DIR, name), "utf8")) as RuleFile;
    const count = file.groups.reduce((sum, group) => sum + group.rules.length, 0);
    const run = await runPromtool(["check", "rules", join(DIR, name)]);
    expect(run.output).toContain(`SUCCESS: ${count} rules found`);
    expect(run.code, run.output).toBe(0);
  });

  it("check rules rejects what Prometheus would not load", async () => {
    const broken = join(scratch, "broken.yaml");
    await writeFile(broken, "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(oauth_broker_audit_write_failures_total) > 0\n");
    const run = await runPromtool(["check", "rules", broken]);
    expect(run.code).not.toBe(0);
    expect(run.output).toMatch(/range vector/);
  });

  it.each(testFiles)("test rules passes %s", async (name) => {
    const run = await runPromtool(["test", "rules", join(DIR, name)]);
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain("SUCCESS");
  });

  it("tests every alert: firing once its for has passed, pending a minute before, quiet on a healthy target", async () => {
    const alerts = new Map<string, number>();
    for (const name of ruleFiles) {
      const file = parse(await readFile(join(DIR, name), "utf8")) as RuleFile;
      for (const rule of file.groups.flatMap((group) => group.rules)) if (rule.alert !== undefined) alerts.set(rule.alert, durationMs(rule.for ?? "0s"));
    }
    expect(alerts.size).toBe(9);
    const covered = new Set<string>();
    for (const name of testFiles) {
      const file = parse(await readFile(join(DIR, name), "utf8")) as RuleTestFile;
      const step = durationMs(file.evaluation_interval ?? "1m");
      for (const test of file.tests) {
        for (const [alert, forMs] of alerts) {
          const cases = (test.alert_rule_test ?? []).filter((entry) => entry.alertname === alert);
          const firing = cases.filter((entry) => entry.exp_alerts.length > 0).map((entry) => durationMs(entry.eval_time));
          if (firing.length === 0) continue;
          const firstFiring = Math.min(...firing);
          const label = `${test.name ?? "?"}: ${alert}`;
          expect(firstFiring, `${label} fires before its for of ${forMs} ms`).toBeGreaterThanOrEqual(forMs);
          const quiet = cases.filter((entry) => entry.exp_alerts.length === 0).map((entry) => durationMs(entry.eval_time));
          expect(quiet, `${label}: no quiet evaluation one step before it fires`).toContain(firstFiring - step);
          // A healthy target: input series that no expected alert's labels select.
          const expected = cases.flatMap((entry) => entry.exp_alerts.map((a) => Object.entries(a.exp_labels ?? {}).filter(([key]) => key !== "severity")));
          const healthy = test.input_series.filter(({ series }) => {
            const labels = seriesLabels(series);
            return expected.every((pairs) => pairs.some(([key, value]) => labels[key] !== value));
          });
          expect(healthy.length, `${label}: no healthy series beside the failing one`).toBeGreaterThan(0);
          covered.add(alert);
        }
      }
    }
    expect([...covered].sort()).toEqual([...alerts.keys()].sort());
  });
});
