/**
 * How Vault's answers (as node-vault rejects them) become `BrokerError`s, and the ciphertext
 * prefix parsing the re-wrap job relies on.
 */
import { describe, expect, it } from "vitest";
import { ciphertextVersion } from "../../src/crypto/ciphertext-version.js";
import { classifyVaultError, unwrapVaultMessage, vaultBrokerError } from "../../src/crypto/vault-errors.js";
import { BrokerError } from "../../src/domain/errors.js";

/** The shape of node-vault's ApiResponseError. */
function apiError(statusCode: number, body: unknown): Error {
  const error = new Error("Status " + statusCode) as Error & { response: unknown };
  error.response = { statusCode, body };
  return error;
}

describe("classifyVaultError", () => {
  it("unwraps Vault's multierror text", () => {
    expect(unwrapVaultMessage("1 error occurred:\n\t* permission denied\n\n")).toBe("permission denied");
    expect(unwrapVaultMessage("2 errors occurred:\n\t* a\n\t* b\n\n")).toBe("a; b");
    expect(unwrapVaultMessage("permission denied")).toBe("permission denied");
  });

  it.each([
    [503, { errors: ["Vault is sealed"] }, "unavailable", "Vault is sealed"],
    [500, { errors: ["1 error occurred:\n\t* internal error\n\n"] }, "unavailable", "internal error"],
    [429, { errors: ["request path \"transit/encrypt/k\": rate limit quota exceeded"] }, "unavailable", 'request path "transit/encrypt/k": rate limit quota exceeded'],
    [403, { errors: ["1 error occurred:\n\t* permission denied\n\n"] }, "forbidden", "permission denied"],
    [404, { errors: [] }, "not_found", "not found"],
    [400, { errors: ["cipher: message authentication failed"] }, "refused", "cipher: message authentication failed"],
  ])("status %i → %s", (status, body, kind, detail) => {
    expect(classifyVaultError(apiError(status, body))).toEqual({ kind, status, detail });
  });

  it("names the first failed batch item without keeping any other part of the body", () => {
    const failure = classifyVaultError(
      apiError(400, {
        data: {
          batch_results: [
            { plaintext: Buffer.from("someone's token").toString("base64"), reference: "" },
            { plaintext: "", error: "cipher: message authentication failed", reference: "" },
          ],
        },
      }),
    );
    expect(failure).toEqual({ kind: "refused", status: 400, detail: "cipher: message authentication failed (batch item 2 of 2, 1 failed)" });
  });

  it("treats transport failures and timeouts as unavailable", () => {
    const refused = new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });
    expect(classifyVaultError(refused)).toEqual({ kind: "unavailable", status: undefined, detail: "network error ECONNREFUSED" });
    const timeout = new DOMException("The operation was aborted due to timeout", "TimeoutError");
    expect(classifyVaultError(timeout)).toEqual({ kind: "unavailable", status: undefined, detail: "request timed out" });
  });
});

describe("vaultBrokerError", () => {
  it("maps unavailable to key_service_unavailable with a retry hint", () => {
    const error = vaultBrokerError({ kind: "unavailable", status: 503, detail: "Vault is sealed" }, "transit/decrypt/k");
    expect(error.code).toBe("key_service_unavailable");
    expect(error.retryAfterMs).toBe(5000);
    expect(String(error.cause)).toContain("Vault answered 503: Vault is sealed on transit/decrypt/k");
  });

  it("maps refusals to key_service_error with a reason per cause", () => {
    const auth = vaultBrokerError({ kind: "refused", status: 400, detail: "cipher: message authentication failed" }, "p");
    expect([auth.code, auth.reason, auth.retryAfterMs]).toEqual(["key_service_error", "CIPHERTEXT_AUTHENTICATION_FAILED", undefined]);
    const old = vaultBrokerError({ kind: "refused", status: 400, detail: "ciphertext or signature version is disallowed by policy (too old)" }, "p");
    expect(old.reason).toBe("CIPHERTEXT_VERSION_DISALLOWED");
    const denied = vaultBrokerError({ kind: "forbidden", status: 403, detail: "permission denied" }, "p");
    expect([denied.code, denied.reason]).toEqual(["key_service_error", "KEY_SERVICE_PERMISSION_DENIED"]);
  });
});

describe("ciphertextVersion", () => {
  it("reads the version from the scheme's prefix", () => {
    expect(ciphertextVersion("vault:v12:abcd", "vault")).toBe(12);
    expect(ciphertextVersion("local:v3:abcd", "local")).toBe(3);
  });

  it.each(["local:v1:abc", "vault:v0:abc", "vault:vx:abc", "vault:v1", "", "abc"])("refuses %j for vault", (value) => {
    expect(() => ciphertextVersion(value, "vault")).toThrow(BrokerError);
  });
});
