/** The mapping of PostgreSQL and socket failures to broker errors (no I/O). */
import { describe, expect, it } from "vitest";
import { BrokerError, type BrokerErrorCode } from "../../src/domain/errors.js";
import { toBrokerError } from "../../src/storage/database.js";

const withCode = (code: string, message = "server said: secret-value") => Object.assign(new Error(message), { code });

describe("toBrokerError", () => {
  it.each<[string, BrokerErrorCode]>([
    ["ECONNREFUSED", "database_unavailable"],
    ["ECONNRESET", "database_unavailable"],
    ["ETIMEDOUT", "database_unavailable"],
    ["CONNECT_TIMEOUT", "database_unavailable"],
    ["CONNECTION_CLOSED", "database_unavailable"],
    ["CONNECTION_ENDED", "database_unavailable"],
    ["08006", "database_unavailable"],
    ["08001", "database_unavailable"],
    ["57P01", "database_unavailable"],
    ["57P03", "database_unavailable"],
    ["53300", "database_unavailable"],
    ["40001", "database_unavailable"],
    ["57014", "deadline_exceeded"],
    ["23505", "already_exists"],
    ["22P02", "invalid_argument"],
    ["23514", "invalid_argument"],
    ["22001", "invalid_argument"],
    ["23503", "internal"],
    ["42P01", "internal"],
  ])("maps %s to %s, keeping the original as cause and its text out of the message", (code, expected) => {
    const original = withCode(code);
    const mapped = toBrokerError(original, "store the integration");
    expect(mapped.code).toBe(expected);
    expect(mapped.cause).toBe(original);
    expect(mapped.message).toContain("store the integration");
    expect(mapped.message).not.toContain("secret-value");
  });

  it("says when to retry an unavailable database", () => {
    expect(toBrokerError(withCode("ECONNREFUSED"), "read").retryAfterMs).toBeGreaterThan(0);
    expect(toBrokerError(withCode("42P01"), "read").retryAfterMs).toBeUndefined();
  });

  it("passes broker errors through and treats anything else as internal", () => {
    const original = new BrokerError("not_found", "no such integration");
    expect(toBrokerError(original, "read")).toBe(original);
    expect(toBrokerError("a string", "read").code).toBe("internal");
    expect(toBrokerError(undefined, "read").code).toBe("internal");
  });
});
