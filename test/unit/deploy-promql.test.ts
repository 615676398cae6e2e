/** The PromQL check the deploy tests rely on: it must accept what Prometheus accepts and reject the usual mistakes. */
import { Counter, Histogram, Registry, Summary } from "prom-client";
import { describe, expect, it } from "vitest";
import { analysePromql, exposedSeriesNames, withGrafanaVariables } from "../support/promql.js";
import { githubSlug, headingAnchors } from "../support/markdown-anchors.js";

describe("analysePromql", () => {
  it.each([
    ['sum by (grpc_method) (rate(grpc_server_handled_total{grpc_code!="OK"}[5m]))', "instant"],
    ["histogram_quantile(0.99, sum by (le, provider) (rate(x_bucket[5m])))", "instant"],
    ['sum(rate(a_total{r="hit"}[5m])) / sum(rate(a_total[5m])) > 0.5 and on (job) b >= 10', "instant"],
    ["max_over_time(rate(a_total[1m])[1h:5m])", "instant"],
    ['count(max by (provider) (g) == 1) or vector(0)', "instant"],
    ["2 * a{state=\"open\"} + ignoring (state) a{state=\"half_open\"}", "instant"],
    ["sum(rate(a_total[5m] offset 1h)) by (job)", "instant"],
    ["topk(5, a) * on (job) group_left (version) b", "instant"],
    ["1 + 2 * 3 ^ 2", "scalar"],
    ["1 > bool 0", "scalar"],
    ["x[1h30m]", "range"],
    ['{__name__="up", job=~"broker.*"}', "instant"],
    ["-delta(g[1h])", "instant"],
  ])("accepts %s", (expr, type) => {
    expect(analysePromql(expr).type).toBe(type);
  });

  it.each([
    ["sum(rate(a_total[5m])", /expected "\)"/],
    ["rate(a_total)", /must be a range vector/],
    ["sum(a_total[5m])", /aggregates an instant vector/],
    ["a_total[5m] / 2", /not a range vector/],
    ["rates(a_total[5m])", /unknown function rates/],
    ["a_total[5x]", /duration|unexpected/],
    ["a_total{job=broker}", /quoted label value/],
    ['a_total{job="b" instance="i"}', /expected "," or "}"/],
    ['{job=""}', /metric name or a matcher/],
    ["(a + b)[5m]", /subquery/],
    ["sum by job (a)", /expected "\("/],
    ["1 > 0", /needs bool/],
    ["a and 1", /instant vectors on both sides/],
    ["histogram_quantile(a, b)", /must be a scalar/],
    ["a_total b_total", /after the expression/],
    ['a{x=~"("}', /invalid regular expression/],
  ])("rejects %s", (expr, message) => {
    expect(() => analysePromql(expr)).toThrow(message);
  });

  it("lists the metric names an expression selects", () => {
    const { metrics } = analysePromql('sum(rate(a_total{x="y"}[5m])) by (job) / on (job) group_left b + {__name__="c"} + time()');
    expect([...metrics].sort()).toEqual(["a_total", "b", "c"]);
  });

  it("substitutes Grafana variables", () => {
    expect(withGrafanaVariables('rate(a{job=~"$job", i=~"${instance}"}[$__rate_interval])')).toBe('rate(a{job=~"grafana_variable", i=~"grafana_variable"}[5m])');
  });

  it("expands histograms to the series a scrape holds", () => {
    const registry = new Registry();
    new Histogram({ name: "h_seconds", help: "h", registers: [registry] });
    new Counter({ name: "c_total", help: "c", registers: [registry] });
    new Summary({ name: "s_seconds", help: "s", registers: [registry] });
    expect([...exposedSeriesNames(registry)].sort()).toEqual(["c_total", "h_seconds_bucket", "h_seconds_count", "h_seconds_sum", "s_seconds", "s_seconds_count", "s_seconds_sum"]);
  });
});

describe("githubSlug", () => {
  it("follows GitHub's heading anchors", () => {
    expect(githubSlug("OAuthBrokerAuditChainBroken")).toBe("oauthbrokerauditchainbroken");
    expect(githubSlug("Callers: authentication, roles, policy, limits")).toBe("callers-authentication-roles-policy-limits");
    expect(githubSlug("Tokens at rest: Vault transit or the local keyring")).toBe("tokens-at-rest-vault-transit-or-the-local-keyring");
    expect(githubSlug("`GET /metrics` reference")).toBe("get-metrics-reference");
    expect([...headingAnchors("# A\n## A\n```\n# not a heading\n```\n### b_c d\n")]).toEqual(["a", "a-1", "b_c-d"]);
  });
});
