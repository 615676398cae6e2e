/**
 * The one table from broker error codes to RPC status codes, and the only place a
 * `ConnectError` is made. Messages follow AIP-193: they say what to fix; details carry
 * `google.rpc.ErrorInfo` always, `RetryInfo` when a retry makes sense and `BadRequest` for
 * field violations. A `cause` is logged by the caller of `toConnectError`, never sent.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { BrokerError, type BrokerErrorCode } from "../domain/errors.js";

export const ERROR_DOMAIN = "oauth-broker";

export const GRPC_CODE_BY_ERROR = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  rate_limited: Code.ResourceExhausted,
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
  unimplemented: Code.Unimplemented,
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

function fromBrokerError(error: BrokerError): ConnectError {
  const code = GRPC_CODE_BY_ERROR[error.code];
  const message = OPAQUE_MESSAGES[error.code] ?? error.message;
  const outgoing = new ConnectError(
    message,
    code,
    undefined,
    [{ desc: ErrorInfoSchema, value: { reason: error.reason, domain: ERROR_DOMAIN, metadata: { ...error.metadata } } }],
    error,
  );
  if (error.retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.ceil(error.retryAfterMs));
    outgoing.details.push({
      desc: RetryInfoSchema,
      value: { retryDelay: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 } },
    });
  }
  if (error.fieldViolations.length > 0) {
    outgoing.details.push({
      desc: BadRequestSchema,
      value: create(BadRequestSchema, { fieldViolations: error.fieldViolations.map((v) => ({ ...v })) }),
    });
  }
  return outgoing;
}

/** Whether the failure is the broker's fault (logged at error level, reported to error tracking). */
export function isServerFault(error: ConnectError): boolean {
  return error.code === Code.Internal || error.code === Code.Unknown || error.code === Code.DataLoss;
}
