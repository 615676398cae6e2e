/**
 * The exit status of `npm run bench`. A missed target fails the command, so a run in CI or before
 * a merge cannot report FAIL and still look green; `BENCH_EXPLORE=1` opts out for exploratory
 * runs (tuning a figure, a loaded laptop). A benchmark that did not complete fails either way:
 * that is a broken benchmark, not a figure to explore.
 */

export interface BenchOutcome {
  /** Checks whose verdict was FAIL. */
  readonly missedTargets: number;
  /** Benchmarks that threw before producing a report. */
  readonly incomplete: number;
}

export interface BenchMode {
  readonly explore: boolean;
}

/** Reads the mode from the environment; a value it cannot read is an error, not a silent default. */
export function benchMode(env: NodeJS.ProcessEnv): BenchMode {
  if (env["BENCH_STRICT"] !== undefined) {
    throw new Error("BENCH_STRICT is no longer read: a missed target always fails the run; set BENCH_EXPLORE=1 to report without failing");
  }
  const raw = env["BENCH_EXPLORE"];
  if (raw === undefined || raw === "" || raw === "0") return { explore: false };
  if (raw === "1") return { explore: true };
  throw new Error(`BENCH_EXPLORE must be 1 (report missed targets without failing) or 0, got "${raw}"`);
}

export function benchExitCode(outcome: BenchOutcome, mode: BenchMode): 0 | 1 {
  if (outcome.incomplete > 0) return 1;
  if (outcome.missedTargets > 0 && !mode.explore) return 1;
  return 0;
}
