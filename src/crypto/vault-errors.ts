/**
 * Vault failures as the broker sees them. node-vault rejects a non-2xx answer with an error whose
 * `response` is `{ statusCode, body }` (its classes are not exported, so this branches on the
 * shape), and a transport failure with the raw error. A batch with a failing item is HTTP 400
 * with `data.batch_results` and no top-level `errors`.
 *
 * Nothing from a response body other than Vault's own error strings is kept: the body of a failed
 * batch decrypt holds the plaintexts of the items that succeeded.
 */
import { BrokerError } from "../domain/errors.js";
import type { ErrorReason } from "../domain/error-reasons.js";

export type VaultFailureKind =
  /** Sealed, standby, 5xx, 429, network, timeout: retry later. */
  | "unavailable"
  /** 403: the token lacks the capability, or it expired or was revoked. */
  | "forbidden"
  /** 404: nothing at the path (a missing key on read). */
  | "not_found"
  /** 400 and other 4xx: the request or the ciphertext was refused. */
  | "refused";

export interface VaultFailure {
  readonly kind: VaultFailureKind;
  readonly status: number | undefined;
  /** Vault's error, unwrapped from its multierror text, or the transport failure's name. */
  readonly detail: string;
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
}

/** "1 error occurred:\n\t* permission denied\n\n" → "permission denied". */
export function unwrapVaultMessage(message: string): string {
  const items = [...message.matchAll(/^\s*\*\s*(.+?)\s*$/gm)].map((match) => match[1] ?? "");
  if (/^\d+ errors? occurred:/.test(message.trim()) && items.length > 0) return items.join("; ");
  return message.trim();
}

function bodyDetail(body: Record<string, unknown> | undefined, status: number): string {
  const errors = body?.["errors"];
  if (Array.isArray(errors) && typeof errors[0] === "string" && errors[0] !== "") return unwrapVaultMessage(errors[0]);
  const results = record(body?.["data"])?.["batch_results"];
  if (Array.isArray(results)) {
    const index = results.findIndex((item) => typeof record(item)?.["error"] === "string" && record(item)?.["error"] !== "");
    if (index >= 0) {
      const failed = results.filter((item) => typeof record(item)?.["error"] === "string" && record(item)?.["error"] !== "").length;
      const first = String(record(results[index])?.["error"]);
      return `${unwrapVaultMessage(first)} (batch item ${index + 1} of ${results.length}, ${failed} failed)`;
    }
  }
  return `HTTP ${status}`;
}

function transportDetail(error: unknown): string {
  const err = record(error);
  const name = typeof err?.["name"] === "string" ? err["name"] : "Error";
  if (name === "TimeoutError" || name === "AbortError") return "request timed out";
  const cause = record(err?.["cause"]);
  const code = typeof cause?.["code"] === "string" ? cause["code"] : typeof err?.["code"] === "string" ? err["code"] : undefined;
  return code ? `network error ${code}` : `network error (${name})`;
}

export function classifyVaultError(error: unknown): VaultFailure {
  const response = record(record(error)?.["response"]);
  const status = response?.["statusCode"];
  if (typeof status !== "number") {
    if (error instanceof Error || record(error)?.["name"] !== undefined) {
      return { kind: "unavailable", status: undefined, detail: transportDetail(error) };
    }
    return { kind: "refused", status: undefined, detail: "invalid request" };
  }
  const detail = bodyDetail(record(response?.["body"]), status);
  if (status === 403) return { kind: "forbidden", status, detail };
  if (status === 404) return { kind: "not_found", status, detail: detail === "HTTP 404" ? "not found" : detail };
  if (status === 429 || status >= 500) return { kind: "unavailable", status, detail };
  return { kind: "refused", status, detail };
}

const REASONS: ReadonlyArray<readonly [RegExp, ErrorReason]> = [
  [/message authentication failed/, "CIPHERTEXT_AUTHENTICATION_FAILED"],
  [/disallowed by policy \(too old\)/, "CIPHERTEXT_VERSION_DISALLOWED"],
  [/^invalid ciphertext/, "CIPHERTEXT_MALFORMED"],
  [/encryption key not found/, "KEY_NOT_FOUND"],
];

/**
 * The `BrokerError` for a failure of the call to `path`. The message stays generic (callers see
 * it); the cause, for the log, names Vault's answer and the path, never a secret.
 */
export function vaultBrokerError(failure: VaultFailure, path: string): BrokerError {
  const cause = new Error(`Vault ${failure.status === undefined ? "call failed" : `answered ${failure.status}`}: ${failure.detail} on ${path}`);
  const metadata = { backend: "vault-transit", path, ...(failure.status === undefined ? {} : { status: String(failure.status) }) };
  switch (failure.kind) {
    case "unavailable":
      return new BrokerError("key_service_unavailable", "the key service (Vault) is unavailable; retry later", {
        cause,
        reason: "KEY_SERVICE_UNAVAILABLE",
        metadata,
        retryAfterMs: failure.status === 503 ? 5000 : 2000,
      });
    case "forbidden":
      return new BrokerError("key_service_error", "the key service (Vault) refused the broker's credentials", {
        cause,
        reason: "KEY_SERVICE_PERMISSION_DENIED",
        metadata,
      });
    case "not_found":
      return new BrokerError("key_service_error", "the key service (Vault) has nothing at the configured path", {
        cause,
        reason: "KEY_SERVICE_NOT_FOUND",
        metadata,
      });
    case "refused": {
      const reason = REASONS.find(([pattern]) => pattern.test(failure.detail))?.[1] ?? "KEY_SERVICE_REFUSED";
      const message =
        reason === "CIPHERTEXT_AUTHENTICATION_FAILED"
          ? "a stored ciphertext failed authentication (tampered, or bound to another record)"
          : "the key service (Vault) refused the request";
      return new BrokerError("key_service_error", message, { cause, reason, metadata });
    }
  }
}
