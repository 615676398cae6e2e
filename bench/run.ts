/**
 * `npm run bench`: runs the benchmarks and prints, for each, its figures measured in this run
 * on this machine and PASS/FAIL against its target. `BENCH_ONLY=a,c` runs a subset;
 * `BENCH_STRICT=1` makes a missed target fail the command.
 */
import { benchColdPath } from "./cold-path.js";
import { benchLargeTable } from "./large-table.js";
import { benchRefreshStorm } from "./refresh-storm.js";
import { startBenchServer, type BenchServer } from "./support/postgres.js";
import { formatReport, type BenchReport } from "./support/report.js";
import { benchWarmPath } from "./warm-path.js";

const BENCHMARKS: ReadonlyArray<{ id: string; run: (server: BenchServer) => Promise<BenchReport> }> = [
  { id: "a", run: benchWarmPath },
  { id: "b", run: benchColdPath },
  { id: "c", run: benchRefreshStorm },
  { id: "d", run: benchLargeTable },
];

const only = (process.env["BENCH_ONLY"] ?? "").split(",").map((id) => id.trim()).filter(Boolean);
const selected = BENCHMARKS.filter((bench) => only.length === 0 || only.includes(bench.id));
const started = performance.now();
const server = await startBenchServer();
let failed = 0;
try {
  for (const bench of selected) {
    const t = performance.now();
    try {
      const report = await bench.run(server);
      failed += report.checks.filter((check) => check.verdict === "FAIL").length;
      process.stdout.write(`${formatReport(report)}\n    (${((performance.now() - t) / 1000).toFixed(0)} s)\n\n`);
    } catch (error) {
      failed += 1;
      process.stdout.write(`(${bench.id}) did not complete: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n\n`);
    }
  }
} finally {
  await server.close();
}
process.stdout.write(`${selected.length} benchmarks in ${((performance.now() - started) / 1000).toFixed(0)} s on ${server.origin}; ${failed} target(s) missed\n`);
process.exit(failed > 0 && process.env["BENCH_STRICT"] === "1" ? 1 : 0);
