import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // expect.poll waits as long as test/support/wait-until.ts does: vitest's 1 s is a fast idle
    // machine's pace, not a loaded one's.
    expect: { poll: { timeout: 10_000 } },
    // Two cores: integration files each get their own database, so files may run in parallel.
    pool: "forks",
    maxWorkers: 2,
    projects: [
      {
        // Unit tests do no I/O, so they get no PostgreSQL (`vitest run test/unit` starts none) and
        // a setup that refuses sockets and child processes.
        extends: true,
        test: { name: "unit", include: ["test/unit/**/*.test.ts"], setupFiles: ["test/support/unit-no-io.ts"] },
      },
      {
        // One project for both, so a full run starts (or connects to) a single server. Vitest runs a
        // project's global setup only when one of its files is selected.
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts", "test/e2e/**/*.test.ts"],
          globalSetup: ["test/support/global-setup.ts"],
        },
      },
    ],
  },
});
