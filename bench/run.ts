/**
 * `npm run bench`: runs the benchmarks and prints, for each, its figures measured in this run
 * on this machine and PASS/FAIL against its target. `BENCH_ONLY=a,c` runs a subset. A missed
 * target or a benchmark that did not complete exits 1; `BENCH_EXPLORE=1` reports missed targets
 * without failing (see support/exit-code.ts).
 */
import { benchColdPath } from "./cold-path.js";
import { benchLargeTable } from "./large-table.js";
import { benchRefreshCapacity } from "./refresh-capacity.js";
import { benchRefreshStorm } from "./refresh-storm.js";
import { describeMachineShare, machineCpu } from "./support/cpu.js";
import { benchExitCode, benchMode } from "./support/exit-code.js";
import { startBenchServer, type BenchServer } from "./support/postgres.js";
import { formatReport, type BenchReport } from "./support/report.js";
import { benchWarmPath } from "./warm-path.js";

const BENCHMARKS: ReadonlyArray<{ id: string; run: (server: BenchServer) => Promise<BenchReport> }> = [
  { id: "a", run: benchWarmPath },
  { id: "b", run: benchColdPath },
  { id: "c", run: benchRefreshStorm },
  { id: "d", run: benchLargeTable },
  { id: "e", run: benchRefreshCapacity },
];

// Read before anything starts: a misspelt mode must not cost a two-minute run.
const mode = benchMode(process.env);
const only = (process.env["BENCH_ONLY"] ?? "").split(",").map((id) => id.trim()).filter(Boolean);
const unknown = only.filter((id) => !BENCHMARKS.some((bench) => bench.id === id));
// A misspelt id would otherwise run nothing and pass.
if (unknown.length > 0) throw new Error(`BENCH_ONLY names no benchmark: ${unknown.join(", ")} (known: ${BENCHMARKS.map((b) => b.id).join(", ")})`);
const selected = BENCHMARKS.filter((bench) => only.length === 0 || only.includes(bench.id));
const started = performance.now();
const server = await startBenchServer();
let missedTargets = 0;
let incomplete = 0;
try {
  for (const bench of selected) {
    const t = performance.now();
    const machineBefore = machineCpu();
    try {
      const report = await bench.run(server);
      missedTargets += report.checks.filter((check) => check.verdict === "FAIL").length;
      const share = describeMachineShare(machineBefore, machineCpu());
      process.stdout.write(`${formatReport(report)}\n    (${((performance.now() - t) / 1000).toFixed(0)} s; ${share})\n\n`);
    } catch (error) {
      incomplete += 1;
      process.stdout.write(`(${bench.id}) did not complete: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n\n`);
    }
  }
} finally {
  await server.close();
}
const exitCode = benchExitCode({ missedTargets, incomplete }, mode);
process.stdout.write(
  `${selected.length} benchmarks in ${((performance.now() - started) / 1000).toFixed(0)} s on ${server.origin}; ` +
    `${missedTargets} target(s) missed, ${incomplete} benchmark(s) did not complete` +
    `${mode.explore && missedTargets > 0 && incomplete === 0 ? " (BENCH_EXPLORE=1: not failing)" : ""}\n`,
);
process.exit(exitCode);
