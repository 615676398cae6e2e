/**
 * The one table from broker error codes to RPC status codes, and the only place a
 * `ConnectError` is made. Messages follow AIP-193: they say what to fix; details carry
 * `google.rpc.ErrorInfo` always, `RetryInfo` when a retry makes sense and `BadRequest` for
 * field violations. A `cause` is logged by the caller of `toConnectError`, never sent.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { BrokerError, type BrokerErrorCode, type FieldViolation } from "../domain/errors.js";
import { truncateUtf8 } from "../observability/truncation.js";

export const ERROR_DOMAIN = "oauth-broker";

export const GRPC_CODE_BY_ERROR = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  rate_limited: Code.ResourceExhausted,
  request_too_large: Code.ResourceExhausted,
  integration_needs_reauth: Code.FailedPrecondition,
  scope_not_granted: Code.FailedPrecondition,
  authorization_session_invalid: Code.FailedPrecondition,
  authorization_denied: Code.PermissionDenied,
  failed_precondition: Code.FailedPrecondition,
  provider_rate_limited: Code.ResourceExhausted,
  provider_unavailable: Code.Unavailable,
  provider_misconfigured: Code.FailedPrecondition,
  provider_error: Code.Unavailable,
  database_unavailable: Code.Unavailable,
  key_service_unavailable: Code.Unavailable,
  key_service_error: Code.Internal,
  draining: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  internal: Code.Internal,
} as const satisfies Record<BrokerErrorCode, Code>;

/** Codes whose message is generic by design: the specifics are only logged. */
const OPAQUE_MESSAGES: Partial<Record<BrokerErrorCode, string>> = {
  internal: "internal error",
  key_service_error: "internal error: the key service refused the operation",
  unauthenticated: "missing or invalid credentials",
};

export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof BrokerError) return fromBrokerError(error);
  if (error instanceof Error && error.name === "AbortError") {
    return new ConnectError("the call was cancelled or its deadline passed", Code.Canceled);
  }
  // The cause stays server-side: connect never serializes it, and the observe interceptor logs it.
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/**
 * Bounds of an error answer. Messages and details repeat caller text (a scope name, a user id),
 * and a gRPC status travels in trailers that clients refuse past 8 KiB: the message and the
 * details each stay near 3 KiB whatever the caller sent, so no answer exceeds 8 KiB on either
 * listener (README "Request limits and refusals").
 */
export const MAX_FIELD_VIOLATIONS = 10;
const MAX_MESSAGE_BYTES = 512;
const MAX_METADATA_ENTRIES = 8;
const MAX_METADATA_KEY_BYTES = 64;
const MAX_METADATA_VALUE_BYTES = 256;
const MAX_VIOLATION_FIELD_BYTES = 128;
const MAX_VIOLATION_DESCRIPTION_BYTES = 160;
const MAX_DETAILS_BYTES = 3072;

function boundedMetadata(metadata: Readonly<Record<string, string>>): Record<string, string> {
  const entries = Object.entries(metadata).slice(0, MAX_METADATA_ENTRIES);
  return Object.fromEntries(
    entries.map(([key, value]) => [truncateUtf8(key, MAX_METADATA_KEY_BYTES), truncateUtf8(value, MAX_METADATA_VALUE_BYTES)]),
  );
}

function boundedViolations(violations: readonly FieldViolation[], budgetBytes: number): FieldViolation[] {
  const kept: FieldViolation[] = [];
  let used = 0;
  for (const violation of violations.slice(0, MAX_FIELD_VIOLATIONS)) {
    const bounded = {
      field: truncateUtf8(violation.field, MAX_VIOLATION_FIELD_BYTES),
      description: truncateUtf8(violation.description, MAX_VIOLATION_DESCRIPTION_BYTES),
    };
    // Protobuf framing: a few bytes per string on top of its UTF-8 length.
    used += Buffer.byteLength(bounded.field) + Buffer.byteLength(bounded.description) + 8;
    if (used > budgetBytes) break;
    kept.push(bounded);
  }
  return kept;
}

function fromBrokerError(error: BrokerError): ConnectError {
  const code = GRPC_CODE_BY_ERROR[error.code];
  const metadata = boundedMetadata(error.metadata);
  const metadataBytes = Object.entries(metadata).reduce((sum, [k, v]) => sum + Buffer.byteLength(k) + Buffer.byteLength(v) + 8, 0);
  const violations = boundedViolations(error.fieldViolations, MAX_DETAILS_BYTES - metadataBytes - error.reason.length - 64);
  const omitted = error.fieldViolations.length - violations.length;
  const base = truncateUtf8(OPAQUE_MESSAGES[error.code] ?? error.message, MAX_MESSAGE_BYTES);
  const message = omitted > 0 ? `${base} (${omitted} more field violations not listed)` : base;
  if (omitted > 0) metadata["omitted_field_violations"] = String(omitted);
  const outgoing = new ConnectError(
    message,
    code,
    undefined,
    [{ desc: ErrorInfoSchema, value: { reason: error.reason, domain: ERROR_DOMAIN, metadata } }],
    error,
  );
  if (error.retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.ceil(error.retryAfterMs));
    outgoing.details.push({
      desc: RetryInfoSchema,
      value: { retryDelay: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 } },
    });
  }
  if (violations.length > 0) {
    outgoing.details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: violations }) });
  }
  return outgoing;
}

/** Whether the failure is the broker's fault (logged at error level, reported to error tracking). */
export function isServerFault(error: ConnectError): boolean {
  return error.code === Code.Internal || error.code === Code.Unknown || error.code === Code.DataLoss;
}
