import { describe, expect, it, vi } from "vitest";
import type { ErrorReason } from "../../src/domain/error-reasons.js";
import { BrokerError } from "../../src/domain/errors.js";
import { awaitSentMarkHolder, mayHaveBeenProcessed } from "../../src/domain/tokens/refresh-takeover.js";

const unavailable = (reason: ErrorReason, cause?: Error) => new BrokerError("provider_unavailable", "provider failed", { reason, cause });

describe("what a failed refresh request tells about the provider", () => {
  it("does not know after a timeout, an abort or a connection lost after sending", () => {
    expect(mayHaveBeenProcessed(unavailable("PROVIDER_TIMEOUT"))).toBe(true);
    expect(mayHaveBeenProcessed(new BrokerError("deadline_exceeded", "aborted", { reason: "CANCELLED" }))).toBe(true);
    expect(mayHaveBeenProcessed(unavailable("PROVIDER_UNREACHABLE", new Error("transport", { cause: new Error("ECONNRESET") })))).toBe(true);
  });

  it("knows the request was not processed after a provider's answer or a connection never made", () => {
    expect(mayHaveBeenProcessed(unavailable("PROVIDER_UNAVAILABLE"))).toBe(false);
    expect(mayHaveBeenProcessed(unavailable("PROVIDER_UNREACHABLE", new Error("transport", { cause: new Error("ECONNREFUSED") })))).toBe(false);
    expect(mayHaveBeenProcessed(unavailable("PROVIDER_UNREACHABLE", Object.assign(new Error("getaddrinfo"), { code: "ENOTFOUND" })))).toBe(false);
  });
});

describe("waiting for the replica that marked the lease", () => {
  it("returns as soon as the holder's write is seen", async () => {
    let checks = 0;
    const settled = await awaitSentMarkHolder({ waitMs: 60_000, settled: async () => ++checks === 3, wait: async () => undefined });
    expect([settled, checks]).toEqual([true, 3]);
  });

  it("gives up after its bound when nothing changes, polling ever less often", async () => {
    vi.useFakeTimers();
    try {
      const waits: number[] = [];
      const settled = await awaitSentMarkHolder({
        waitMs: 3_000,
        settled: async () => false,
        wait: async (ms) => {
          waits.push(ms);
          vi.advanceTimersByTime(ms);
        },
      });
      expect(settled).toBe(false);
      expect(waits).toEqual([50, 100, 200, 400, 800, 1_000, 450]);
    } finally {
      vi.useRealTimers();
    }
  });
});
