/** Every row of the provider wire-error table (providers.md) and the Retry-After parsing. */
import { describe, expect, it } from "vitest";
import { ClientError, ResponseBodyError } from "openid-client";
import { BrokerError } from "../../src/domain/errors.js";
import {
  classifyWireFailure,
  msUntilPacificMidnight,
  parseRetryAfter,
  revocationOutcome,
  scrubText,
  toProviderError,
  wireFailureFromBody,
  type ProviderOperation,
} from "../../src/providers/provider-errors.js";
import { ProviderTransportError } from "../../src/providers/provider-http.js";

const NOW = new Date("2030-06-01T12:00:00Z");
const context = (operation: ProviderOperation = "refresh") => ({ provider: "p", operation, now: NOW });

describe("parseRetryAfter (RFC 9110 §10.2.3)", () => {
  it("reads delay-seconds and HTTP dates, and ignores garbage", () => {
    expect(parseRetryAfter("120", NOW)).toBe(120_000);
    expect(parseRetryAfter("Sat, 01 Jun 2030 12:00:30 GMT", NOW)).toBe(30_000);
    expect(parseRetryAfter("Sat, 01 Jun 2030 11:00:00 GMT", NOW)).toBe(0);
    expect(parseRetryAfter("soon", NOW)).toBeUndefined();
    expect(parseRetryAfter(null, NOW)).toBeUndefined();
    expect(parseRetryAfter("999999999", NOW)).toBe(24 * 60 * 60 * 1000);
  });
});

describe("wireFailureFromBody", () => {
  it("reads OAuth errors with Microsoft's AADSTS codes", () => {
    expect(
      wireFailureFromBody(400, { error: "invalid_grant", error_description: "AADSTS700082: The refresh token has expired", error_codes: [700082] }, null),
    ).toMatchObject({ status: 400, error: "invalid_grant", aadsts: "700082" });
    expect(wireFailureFromBody(400, { error: "invalid_grant", error_description: "AADSTS50173: The grant has expired" }, null).aadsts).toBe("50173");
  });

  it("reads Notion's error objects and Google API errors", () => {
    expect(wireFailureFromBody(429, { object: "error", status: 429, code: "rate_limited", message: "slow down" }, "3")).toMatchObject({
      error: "rate_limited",
      retryAfter: "3",
    });
    expect(
      wireFailureFromBody(403, { error: { code: 403, message: "quota", errors: [{ domain: "youtube.quota", reason: "quotaExceeded" }] } }, null),
    ).toMatchObject({ apiReason: "quotaExceeded" });
  });

  it("scrubs token-like strings from provider descriptions", () => {
    const token = "ya29.a0AfH6SMBx3jdkf8e7HDJKslkdfjs8ej3kdjfhskdjfh";
    expect(wireFailureFromBody(400, { error: "invalid_grant", error_description: `bad token ${token}` }, null).description).not.toContain(token);
    expect(scrubText(`x ${token} y`)).toBe("x [redacted] y");
  });
});

describe("classifyWireFailure", () => {
  const cases: Array<[string, Parameters<typeof classifyWireFailure>[0], ProviderOperation, BrokerError["code"]]> = [
    ["400 invalid_grant on refresh", { status: 400, error: "invalid_grant" }, "refresh", "integration_needs_reauth"],
    ["400 interaction_required (Microsoft)", { status: 400, error: "interaction_required" }, "refresh", "integration_needs_reauth"],
    ["400 invalid_grant on code exchange", { status: 400, error: "invalid_grant" }, "code_exchange", "authorization_session_invalid"],
    ["401 invalid_client", { status: 401, error: "invalid_client" }, "refresh", "provider_misconfigured"],
    ["400 unauthorized_client", { status: 400, error: "unauthorized_client" }, "code_exchange", "provider_misconfigured"],
    ["401 without a body", { status: 401 }, "revocation", "provider_misconfigured"],
    ["429", { status: 429 }, "refresh", "provider_rate_limited"],
    ["Notion 429 rate_limited", { status: 429, error: "rate_limited" }, "refresh", "provider_rate_limited"],
    ["YouTube 403 quotaExceeded", { status: 403, apiReason: "quotaExceeded" }, "account", "provider_rate_limited"],
    ["500", { status: 500 }, "refresh", "provider_unavailable"],
    ["503", { status: 503 }, "refresh", "provider_unavailable"],
    ["Notion 529 service_overload", { status: 529, error: "service_overload" }, "refresh", "provider_unavailable"],
    ["400 temporarily_unavailable", { status: 400, error: "temporarily_unavailable" }, "refresh", "provider_unavailable"],
    ["400 invalid_request", { status: 400, error: "invalid_request" }, "refresh", "provider_error"],
    ["401 at an account lookup", { status: 401, error: "unauthorized" }, "account", "provider_error"],
    ["403 without a quota reason", { status: 403, apiReason: "forbidden" }, "account", "provider_error"],
  ];
  it.each(cases)("%s", (_name, failure, operation, code) => {
    expect(classifyWireFailure(failure, context(operation)).code).toBe(code);
  });

  it("honours Retry-After and falls back to a default wait", () => {
    expect(classifyWireFailure({ status: 429, retryAfter: "12" }, context()).retryAfterMs).toBe(12_000);
    expect(classifyWireFailure({ status: 429 }, context()).retryAfterMs).toBeGreaterThan(0);
    // The pause (provider-pause.ts) obeys a pace the provider told, and backs off without one.
    expect(classifyWireFailure({ status: 429, retryAfter: "12" }, context()).metadata["retry_after_seconds"]).toBe("12");
    expect(classifyWireFailure({ status: 429 }, context()).metadata["retry_after_seconds"]).toBeUndefined();
    expect(classifyWireFailure({ status: 403, apiReason: "rateLimitExceeded" }, context("account")).metadata["retry_after_seconds"]).toBeUndefined();
    expect(Number(classifyWireFailure({ status: 403, apiReason: "quotaExceeded" }, context("account")).metadata["retry_after_seconds"])).toBeGreaterThan(0);
    expect(classifyWireFailure({ status: 503, retryAfter: "Sat, 01 Jun 2030 12:01:00 GMT" }, context()).retryAfterMs).toBe(60_000);
    expect(classifyWireFailure({ status: 400, error: "invalid_grant" }, context()).retryAfterMs).toBeUndefined();
  });

  it("names the AADSTS code in the reason metadata and the message, never the description", () => {
    const error = classifyWireFailure({ status: 400, error: "invalid_grant", aadsts: "70008", description: "secret-ish text" }, context());
    expect(error.metadata).toMatchObject({ provider: "p", error: "invalid_grant", aadsts: "70008" });
    expect(error.message).toContain("AADSTS70008");
    expect(error.message).not.toContain("secret-ish");
    expect(String(error.cause)).toContain("secret-ish");
  });

  it("waits for the next Pacific midnight on an exhausted YouTube quota", () => {
    const error = classifyWireFailure({ status: 403, apiReason: "quotaExceeded" }, context("account"));
    // 12:00 UTC on 1 June 2030 is 05:00 PDT: 19 hours to midnight.
    expect(error.retryAfterMs).toBe(19 * 60 * 60 * 1000);
    expect(msUntilPacificMidnight(new Date("2030-01-15T07:59:00Z"))).toBe(60_000);
  });
});

describe("toProviderError", () => {
  it("maps transport failures", () => {
    expect(toProviderError(new ProviderTransportError("timeout", "t"), context()).code).toBe("provider_unavailable");
    expect(toProviderError(new ProviderTransportError("network", "n"), context()).code).toBe("provider_unavailable");
    expect(toProviderError(new ProviderTransportError("aborted", "a"), context()).code).toBe("deadline_exceeded");
    expect(toProviderError(new ProviderTransportError("insecure_endpoint", "i"), context()).code).toBe("provider_misconfigured");
    const wrapped = new ClientError("something went wrong", { cause: new ProviderTransportError("network", "n") });
    expect(toProviderError(wrapped, context()).reason).toBe("PROVIDER_UNREACHABLE");
  });

  it("maps openid-client's ResponseBodyError and non-conform responses by status", () => {
    const response = new Response(null, { status: 400, headers: { "retry-after": "5" } });
    const body = new ResponseBodyError("server responded with an error in the response body", {
      cause: { error: "invalid_grant", error_description: "Token has been expired or revoked." },
      response,
    });
    expect(toProviderError(body, context()).code).toBe("integration_needs_reauth");
    const nonConform = new ClientError("unexpected HTTP response status code", {
      cause: new Response("busy", { status: 503, headers: { "retry-after": "9" } }),
    });
    const mapped = toProviderError(nonConform, context());
    expect(mapped.code).toBe("provider_unavailable");
    expect(mapped.retryAfterMs).toBe(9_000);
  });

  it("keeps BrokerErrors and never uses the original error as the cause", () => {
    const original = new BrokerError("not_found", "x");
    expect(toProviderError(original, context())).toBe(original);
    const raw = new Error("state=abcdef0123456789abcdef0123456789abcdef");
    const mapped = toProviderError(raw, context());
    expect(mapped.code).toBe("provider_error");
    expect(mapped.cause).not.toBe(raw);
    expect(String(mapped.cause)).not.toContain("abcdef0123456789abcdef0123456789abcdef");
  });
});

describe("revocationOutcome (RFC 7009 §2.2)", () => {
  it("retries later on 503 and 429, treats an already dead token as revoked, throws the rest", () => {
    expect(revocationOutcome(classifyWireFailure({ status: 503, retryAfter: "4" }, context("revocation")))).toEqual({
      outcome: "retry_later",
      retryAfterMs: 4_000,
    });
    expect(revocationOutcome(classifyWireFailure({ status: 429 }, context("revocation"))).outcome).toBe("retry_later");
    expect(revocationOutcome(classifyWireFailure({ status: 400, error: "invalid_token" }, context("revocation")))).toEqual({ outcome: "revoked" });
    expect(() => revocationOutcome(classifyWireFailure({ status: 401, error: "invalid_client" }, context("revocation")))).toThrow(BrokerError);
  });
});
