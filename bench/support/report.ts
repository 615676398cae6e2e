/** The result block each benchmark prints: what was measured, the figure, its target, the verdict. */

export type Verdict = "PASS" | "FAIL" | "INFO";

export interface BenchReport {
  readonly title: string;
  readonly lines: readonly string[];
  /** One line per target: the measured figure against it. */
  readonly checks: ReadonlyArray<{ readonly label: string; readonly target: string; readonly verdict: Verdict }>;
}

export function verdict(pass: boolean): Verdict {
  return pass ? "PASS" : "FAIL";
}

export function formatReport(report: BenchReport): string {
  const checks = report.checks.map((check) => `    ${check.verdict.padEnd(4)}  ${check.label}  (target: ${check.target})`);
  return [report.title, ...report.lines.map((line) => `    ${line}`), ...checks].join("\n");
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function ms(value: number): string {
  return `${value.toFixed(2)} ms`;
}

/** Integer environment override, e.g. `BENCH_DURATION_MS=2000`. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return value;
}
