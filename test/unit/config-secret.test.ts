/** Secrets render as "[redacted]" everywhere a value can be printed, and reveal on request. */
import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { createSecret } from "../../src/config/secret.js";

describe("createSecret", () => {
  const secret = createSecret("s3cr3t-value");

  it("reveals the value only through reveal()", () => {
    expect(secret.reveal()).toBe("s3cr3t-value");
  });

  it("prints as [redacted] in strings, JSON and util.inspect", () => {
    expect(String(secret)).toBe("[redacted]");
    expect(`${secret}`).toBe("[redacted]");
    expect(JSON.stringify({ secret })).toBe('{"secret":"[redacted]"}');
    expect(inspect(secret)).toBe("[redacted]");
    expect(inspect({ nested: { secret } }, { depth: 10 })).not.toContain("s3cr3t-value");
  });

  it("cannot be altered to print its value", () => {
    expect(Object.isFrozen(secret)).toBe(true);
    expect(() => {
      (secret as { toString: () => string }).toString = () => "leak";
    }).toThrow(TypeError);
  });
});
