/**
 * `return_to` against the allow-list: the broker must not become an open redirector
 * (RFC 9700 §4.11), whatever prefix, authority or scheme trick the caller sends.
 */
import { describe, expect, it } from "vitest";
import { isBrokerError } from "../../src/domain/errors.js";
import { parseReturnToAllowList, resolveReturnTo, withOutcome } from "../../src/domain/return-to.js";

const allowList = parseReturnToAllowList(["https://app.example.com/settings/integrations", "http://localhost:3000/"]);

function rejection(requested: string): string {
  try {
    resolveReturnTo(requested, allowList);
  } catch (error) {
    if (isBrokerError(error, "invalid_argument")) {
      expect(error.fieldViolations.map((v) => v.field)).toEqual(["return_to"]);
      return error.message;
    }
    throw error;
  }
  throw new Error(`accepted ${requested}`);
}

describe("return_to allow-list", () => {
  it("defaults to the first entry when none is given", () => {
    expect(resolveReturnTo("", allowList)).toBe("https://app.example.com/settings/integrations");
  });

  it.each([
    ["https://app.example.com/settings/integrations", "https://app.example.com/settings/integrations"],
    ["https://app.example.com/settings/integrations/google?tab=1#top", "https://app.example.com/settings/integrations/google?tab=1#top"],
    ["HTTPS://APP.EXAMPLE.COM:443/settings/integrations/x", "https://app.example.com/settings/integrations/x"],
    ["http://localhost:3000/anything", "http://localhost:3000/anything"],
  ])("accepts %s (normalized)", (requested, expected) => {
    expect(resolveReturnTo(requested, allowList)).toBe(expected);
  });

  it.each([
    // Host prefix and suffix tricks.
    "https://app.example.com.evil.com/settings/integrations",
    "https://evil.com/app.example.com/settings/integrations",
    "https://evilapp.example.com/settings/integrations",
    // User info makes the real host the part after "@".
    "https://app.example.com@evil.com/settings/integrations",
    "https://app.example.com:pw@evil.com/settings/integrations",
    "https://user@app.example.com/settings/integrations",
    // Scheme-relative, relative and other schemes.
    "//evil.com/settings/integrations",
    "/settings/integrations",
    "javascript:alert(1)//https://app.example.com/settings/integrations",
    "JavaScript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "ftp://app.example.com/settings/integrations",
    // Backslashes and whitespace that parsers read differently.
    "https://app.example.com\\@evil.com/settings/integrations",
    "https:\\\\evil.com/settings/integrations",
    "https://app.example.com/settings/integrations\\..\\..\\admin",
    " https://app.example.com/settings/integrations",
    "https://app.example.com/settings/integrations\n",
    "https://app.example.com/settings/integ rations",
    // Wrong scheme, port or path.
    "http://app.example.com/settings/integrations",
    "https://app.example.com:8443/settings/integrations",
    "https://app.example.com/settings/integrations-evil",
    "https://app.example.com/settings/integrations/../../admin",
    "https://app.example.com/settings/integrations/%2e%2e/%2e%2e/admin",
    "https://app.example.com/",
    "https:evil.com",
    "https:///evil.com",
    "not a url",
  ])("rejects %s", (requested) => {
    expect(rejection(requested)).toMatch(/^return_to: /);
  });

  it("rejects overlong values", () => {
    expect(rejection(`https://app.example.com/settings/integrations/${"a".repeat(2100)}`)).toMatch(/return_to/);
  });

  it("lists the allowed prefixes in the message", () => {
    expect(rejection("https://evil.com/")).toContain("https://app.example.com/settings/integrations");
  });

  it("refuses everything when the allow-list is empty, and rejects invalid entries", () => {
    expect(() => resolveReturnTo("", [])).toThrow(/returnToAllowList/);
    expect(() => parseReturnToAllowList(["javascript:alert(1)"])).toThrow(/returnToAllowList\[0\]/);
    expect(() => parseReturnToAllowList(["https://u@app.example.com/"])).toThrow(/returnToAllowList\[0\]/);
  });

  it("appends the outcome, replacing parameters of the same name the app already had", () => {
    expect(withOutcome("https://app.example.com/x?tab=1&error=old#frag", { error: "access_denied" })).toBe(
      "https://app.example.com/x?tab=1&error=access_denied#frag",
    );
    const connected = new URL(withOutcome("https://app.example.com/x?status=bad", { integration_id: "id-1", status: "connected" }));
    expect(Object.fromEntries(connected.searchParams)).toEqual({ integration_id: "id-1", status: "connected" });
  });
});
