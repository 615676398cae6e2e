/**
 * Reads Prometheus text exposition (format 0.0.4) into samples, so tests assert on exact label
 * sets and values instead of on substrings that also match a neighbouring series.
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (match === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key = "", raw = ""] of (match[2] ?? "").matchAll(LABEL)) {
      labels[key] = raw.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    samples.push({ name: match[1] ?? "", labels, value: Number(match[3]) });
  }
  return samples;
}

/** Samples of one series name as `label=value,…` keys (sorted) to values, for `toEqual`. */
export function series(samples: readonly Sample[], name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const sample of samples) {
    if (sample.name !== name) continue;
    const key = Object.entries(sample.labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    out[key] = sample.value;
  }
  return out;
}

/** Names of the metric families a `# TYPE` line declares. */
export function declaredFamilies(text: string): Map<string, string> {
  const families = new Map<string, string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(match[1] ?? "", match[2] ?? "");
  return families;
}

/** What a broker's /metrics at `httpUrl` exposes right now. */
export async function scrapeMetrics(httpUrl: string): Promise<Sample[]> {
  return parseExposition(await (await fetch(`${httpUrl}/metrics`)).text());
}

/** The value of an unlabelled series; 0 when absent, as a counter nothing has counted yet is. */
export function unlabelledValue(samples: readonly Sample[], name: string): number {
  return samples.find((sample) => sample.name === name && Object.keys(sample.labels).length === 0)?.value ?? 0;
}
