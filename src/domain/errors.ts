/**
 * The one error type of the broker. Every adapter turns its own failures into a `BrokerError`
 * at its edge; `transport/error-mapping.ts` is the only place that turns one into a wire status.
 * `cause` is for the log only and never reaches a caller.
 */
export type BrokerErrorCode =
  /** The request is malformed or a field value is wrong; `fieldViolations` names the fields. */
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  /** No valid credential. The message stays generic; the specific reason goes to the log. */
  | "unauthenticated"
  | "permission_denied"
  /** The caller exceeded a broker rate limit. */
  | "rate_limited"
  /** The request body is larger than the configured maximum (as sent or once decompressed). */
  | "request_too_large"
  /** The provider refused the grant; the user must connect the account again. */
  | "integration_needs_reauth"
  /** The integration lacks scopes the caller requires (incremental consent needed). */
  | "scope_not_granted"
  /** The authorization session (state) is unknown, expired, used, or bound to someone else. */
  | "authorization_session_invalid"
  /**
   * The provider or the user refused the authorization (`error=access_denied` and friends), or
   * the broker refused what was granted (`SCOPE_WIDENED`: scopes it did not ask for).
   */
  | "authorization_denied"
  /** Operation not valid in the resource's current state. */
  | "failed_precondition"
  /** The provider answered 429 (or YouTube's 403 quotaExceeded). */
  | "provider_rate_limited"
  /** The provider is down, slow or its circuit is open; retry later. */
  | "provider_unavailable"
  /** The provider rejected the broker's client credentials: a configuration fault. */
  | "provider_misconfigured"
  /** The provider answered something the broker cannot use. */
  | "provider_error"
  /** PostgreSQL cannot be reached. */
  | "database_unavailable"
  /** The key service (Vault or the local keyring) cannot be reached or is sealed. */
  | "key_service_unavailable"
  /** The key service refused (permission) or a ciphertext failed authentication. */
  | "key_service_error"
  /** The replica is shutting down. */
  | "draining"
  | "deadline_exceeded"
  | "internal";

import { defaultReason, type CodeWithDefaultReason, type ErrorReason } from "./error-reasons.js";

export interface FieldViolation {
  /** Proto field path, for example `min_valid_for` or `scopes[2]`. */
  readonly field: string;
  readonly description: string;
}

export interface BrokerErrorOptions {
  readonly cause?: unknown;
  /**
   * Machine-readable reason for `google.rpc.ErrorInfo`, from the catalogue in
   * `error-reasons.ts`; defaults to the upper-cased code when the catalogue holds it.
   */
  readonly reason?: ErrorReason;
  /** Non-secret details for `ErrorInfo.metadata`. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** When a retry makes sense: how long to wait (`google.rpc.RetryInfo`). */
  readonly retryAfterMs?: number;
  readonly fieldViolations?: readonly FieldViolation[];
}

export class BrokerError extends Error {
  override readonly name = "BrokerError";
  readonly code: BrokerErrorCode;
  readonly reason: ErrorReason;
  readonly metadata: Readonly<Record<string, string>>;
  readonly retryAfterMs: number | undefined;
  readonly fieldViolations: readonly FieldViolation[];

  /**
   * A code whose upper-cased name is no reason of the catalogue (`authorization_denied`,
   * `permission_denied`, ...) has no default: its errors say which refusal they are.
   */
  constructor(code: CodeWithDefaultReason, message: string, options?: BrokerErrorOptions);
  constructor(code: BrokerErrorCode, message: string, options: BrokerErrorOptions & { readonly reason: ErrorReason });
  constructor(code: BrokerErrorCode, message: string, options: BrokerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.reason = options.reason ?? defaultReason(code as CodeWithDefaultReason);
    this.metadata = options.metadata ?? {};
    this.retryAfterMs = options.retryAfterMs;
    this.fieldViolations = options.fieldViolations ?? [];
  }
}

/** Shorthand for the most common edge check: one field is wrong. */
export function invalidArgument(field: string, description: string): BrokerError {
  return new BrokerError("invalid_argument", `${field}: ${description}`, {
    fieldViolations: [{ field, description }],
  });
}

export function isBrokerError(error: unknown, code?: BrokerErrorCode): error is BrokerError {
  return error instanceof BrokerError && (code === undefined || error.code === code);
}
