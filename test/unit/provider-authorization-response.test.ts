/** The callback checks done before any code reaches a token endpoint (RFC 6749 §4.1.2, RFC 9207). */
import { describe, expect, it } from "vitest";
import { isBrokerError } from "../../src/domain/errors.js";
import { readAuthorizationResponse } from "../../src/providers/authorization-response.js";

const expected = { provider: "p", state: "state-123", issuer: "https://issuer.example" };

function failure(url: string, options: Partial<typeof expected & { issuerRequired: boolean }> = {}) {
  try {
    readAuthorizationResponse(new URL(url), { ...expected, ...options });
  } catch (error) {
    if (isBrokerError(error)) return error;
  }
  throw new Error("expected a BrokerError");
}

describe("readAuthorizationResponse", () => {
  it("returns the code when state and issuer match", () => {
    expect(readAuthorizationResponse(new URL("https://b/cb?code=c1&state=state-123&iss=https%3A%2F%2Fissuer.example"), expected)).toBe("c1");
    expect(readAuthorizationResponse(new URL("https://b/cb?code=c1&state=state-123"), expected)).toBe("c1");
  });

  it("rejects a missing or different state, even on an error response", () => {
    expect(failure("https://b/cb?code=c1")).toMatchObject({ code: "authorization_session_invalid", reason: "STATE_MISSING" });
    expect(failure("https://b/cb?code=c1&state=state-124")).toMatchObject({ reason: "STATE_MISMATCH" });
    expect(failure("https://b/cb?error=access_denied&state=other")).toMatchObject({ reason: "STATE_MISMATCH" });
  });

  it("rejects another issuer, and a missing one when the provider advertises RFC 9207", () => {
    expect(failure("https://b/cb?code=c&state=state-123&iss=https%3A%2F%2Fevil.example")).toMatchObject({ reason: "ISSUER_MISMATCH" });
    expect(failure("https://b/cb?code=c&state=state-123", { issuerRequired: true })).toMatchObject({ reason: "ISSUER_MISSING" });
  });

  it("maps the provider's error responses", () => {
    expect(failure("https://b/cb?error=access_denied&state=state-123")).toMatchObject({
      code: "authorization_denied",
      metadata: { provider: "p", error: "access_denied" },
    });
    expect(failure("https://b/cb?error=temporarily_unavailable&state=state-123").code).toBe("provider_unavailable");
    expect(failure("https://b/cb?error=invalid_scope&state=state-123").code).toBe("provider_misconfigured");
    expect(failure("https://b/cb?error=something_else&state=state-123").code).toBe("provider_error");
    expect(failure("https://b/cb?state=state-123")).toMatchObject({ code: "provider_error", reason: "CODE_MISSING" });
  });

  it("never echoes the code or state in the error", () => {
    const error = failure("https://b/cb?code=the-code&state=wrong-state");
    expect(error.message).not.toMatch(/the-code|wrong-state|state-123/);
  });
});
