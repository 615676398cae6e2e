import { describe, expect, it } from "vitest";
import { benchExitCode, benchMode } from "../../bench/support/exit-code.js";

describe("npm run bench exit status", () => {
  const strict = benchMode({});
  const explore = benchMode({ BENCH_EXPLORE: "1" });

  it("fails a run that missed a target unless it is exploratory", () => {
    expect(benchExitCode({ missedTargets: 1, incomplete: 0 }, strict)).toBe(1);
    expect(benchExitCode({ missedTargets: 1, incomplete: 0 }, explore)).toBe(0);
  });

  it("fails a run in which a benchmark did not complete, exploratory or not", () => {
    expect(benchExitCode({ missedTargets: 0, incomplete: 1 }, strict)).toBe(1);
    expect(benchExitCode({ missedTargets: 0, incomplete: 1 }, explore)).toBe(1);
  });

  it("passes a run that met every target", () => {
    expect(benchExitCode({ missedTargets: 0, incomplete: 0 }, strict)).toBe(0);
    expect(benchExitCode({ missedTargets: 0, incomplete: 0 }, explore)).toBe(0);
  });

  it("is strict by default and with BENCH_EXPLORE empty or 0", () => {
    expect(benchMode({}).explore).toBe(false);
    expect(benchMode({ BENCH_EXPLORE: "" }).explore).toBe(false);
    expect(benchMode({ BENCH_EXPLORE: "0" }).explore).toBe(false);
  });

  it("refuses a BENCH_EXPLORE it cannot read and the retired BENCH_STRICT", () => {
    expect(() => benchMode({ BENCH_EXPLORE: "yes" })).toThrow(/BENCH_EXPLORE must be 1 .* got "yes"/);
    expect(() => benchMode({ BENCH_STRICT: "1" })).toThrow(/BENCH_STRICT is no longer read.*BENCH_EXPLORE=1/);
  });
});
