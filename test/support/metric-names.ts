/**
 * Which broker metrics a PromQL expression of the dashboard or the alert rules selects, and which
 * series names a scrape of the broker can hold: so the tests can check the one against the other.
 * Prometheus itself parses and evaluates the expressions (test/e2e/prometheus-scrape.test.ts);
 * this only finds the names, and every metric of the broker has one of these prefixes.
 */
import { Histogram, Summary, type Registry } from "prom-client";

const BROKER_METRIC = /\b(?:oauth_broker|grpc_server|process|nodejs)_[a-zA-Z0-9_]*/g;

export function selectedMetricNames(expr: string): Set<string> {
  return new Set(expr.match(BROKER_METRIC) ?? []);
}

/**
 * What a scrape of `registry` can contain: each metric's name, plus `_bucket`, `_sum` and
 * `_count` for histograms and `_sum`, `_count` for summaries (a histogram's base name holds no
 * series).
 */
export function exposedSeriesNames(registry: Registry): Set<string> {
  const names = new Set<string>();
  for (const metric of registry.getMetricsAsArray()) {
    const name = metric.name;
    if (metric instanceof Histogram) for (const suffix of ["_bucket", "_sum", "_count"]) names.add(`${name}${suffix}`);
    else if (metric instanceof Summary) for (const suffix of ["", "_sum", "_count"]) names.add(`${name}${suffix}`);
    else names.add(name);
  }
  return names;
}
