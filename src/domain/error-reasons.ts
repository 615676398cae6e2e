/**
 * The closed catalogue of `google.rpc.ErrorInfo.reason` values, as `BrokerErrorCode` is the
 * closed set of codes: `BrokerError` accepts only a reason listed here, so a new reason is added
 * here first, with its code(s) and meaning, and in the README's error tables when a caller can
 * see it (`test/unit/error-reasons.test.ts` checks both directions).
 *
 * One line per reason, sorted: the list merges cleanly when several changes add reasons.
 * `startupOnly` marks the reasons raised only while the broker (or a command) starts, before any
 * listener accepts a call, and those guarding a configuration the loader already refuses at
 * start-up: no client ever receives them, so the README's tables leave them out.
 * `seenAs` marks a reason the broker raises inside and always translates before an answer leaves
 * it: the caller receives that reason instead, and the README lists only that one. `unanswered`
 * marks a reason raised only once the caller has gone (it is logged, never received).
 * `redirectOnly` marks a reason of the browser callback alone, whose answer is a redirect to the
 * app carrying an error code (`error=server_error`), never an ErrorInfo. `guardOnly` marks a
 * check of the broker's own invariants that an earlier check always answers first (or that only
 * a fault of the broker's code can fail). `probeOnly` marks a state GetStatus and `/readyz`
 * report as a component down, which no refusal carries. None of these reaches a caller as an
 * ErrorInfo, so the README's tables leave them out, and each names the test that raises it.
 * The upper-cased name of a code is listed when errors of that code may be raised without a
 * more specific reason; a code whose refusals come in kinds (`permission_denied`, ...) has no
 * such default, and `BrokerError` requires its reason.
 */
import type { BrokerErrorCode } from "./errors.js";

export interface ErrorReasonEntry {
  /** The codes the reason is raised with (most reasons have exactly one). */
  readonly codes: readonly BrokerErrorCode[];
  readonly meaning: string;
  readonly startupOnly?: true;
  /** The reason a caller receives in its place. */
  readonly seenAs?: string;
  readonly unanswered?: true;
  readonly redirectOnly?: true;
  readonly guardOnly?: true;
  readonly probeOnly?: true;
}

export const ERROR_REASONS = {
  ACCESS_DENIED: { codes: ["authorization_denied"], meaning: "the user (or the provider's policy) refused the authorization (RFC 6749 §4.1.2.1 access_denied)" },
  ACCESS_TOKEN_MISSING: { codes: ["provider_error"], meaning: "the provider's token response carries no access token" },
  ACCESS_TOKEN_REJECTED: { codes: ["provider_error"], meaning: "the provider refused the fresh access token when the broker looked up the account" },
  ACCOUNT_SELECTION_REQUIRED: { codes: ["authorization_denied"], meaning: "the provider needs the user to pick an account (OIDC account_selection_required)" },
  ACCOUNT_UNKNOWN: { codes: ["provider_error"], meaning: "the provider's answer does not identify the external account" },
  ALREADY_EXISTS: { codes: ["already_exists"], meaning: "default reason: a unique row already exists" },
  AMBIGUOUS_INTEGRATION: { codes: ["failed_precondition"], meaning: "several accounts of the provider are connected for the user; name one with external_account_id" },
  AUDIT_LOG_CLOSED: { codes: ["internal"], meaning: "an audit event arrived after the audit log was closed for shutdown (the listeners, and their connections, close before it)", unanswered: true },
  AUTHORIZATION_CODE_REJECTED: { codes: ["authorization_session_invalid"], meaning: "the provider refused the authorization code or its PKCE verifier (RFC 6749 §5.2)" },
  AUTHORIZATION_ERROR: { codes: ["provider_error"], meaning: "the provider answered the authorization with an error the broker does not classify" },
  AUTHORIZATION_REQUEST_REJECTED: { codes: ["provider_misconfigured"], meaning: "the provider rejected the authorization request: client registration or scopes are wrong" },
  CANCELLED: { codes: ["deadline_exceeded"], meaning: "the provider call was cancelled because the caller went away or its deadline passed", unanswered: true },
  CANNOT_ACT_FOR_OTHER_USER: { codes: ["permission_denied"], meaning: "a user caller named another user" },
  CANNOT_ACT_FOR_USERS: { codes: ["permission_denied"], meaning: "the service's policy does not let it act for users" },
  CIPHERTEXT_AUTHENTICATION_FAILED: { codes: ["key_service_error"], meaning: "a stored ciphertext failed authentication: tampered, or bound to another row" },
  CIPHERTEXT_MALFORMED: { codes: ["key_service_error"], meaning: "a stored ciphertext is not in a format the key service reads" },
  CIPHERTEXT_VERSION_DISALLOWED: { codes: ["key_service_error"], meaning: "Vault refuses to decrypt a ciphertext of a key version older than its minimum" },
  CLIENT_ID_MISSING: { codes: ["provider_misconfigured"], meaning: "the provider has no client id configured", startupOnly: true },
  CLIENT_SECRET_MISSING: { codes: ["provider_misconfigured"], meaning: "the provider's client authentication needs a secret and none is configured", startupOnly: true },
  CODE_MISSING: { codes: ["provider_error"], meaning: "the provider's authorization response has no code (CompleteAuthorization refuses one without code or error first)", redirectOnly: true },
  CONSENT_REQUIRED: { codes: ["authorization_denied", "integration_needs_reauth"], meaning: "the provider needs the user's consent again (OIDC consent_required)" },
  CURSOR_EXPIRED: { codes: ["failed_precondition"], meaning: "a WatchIntegrations cursor is older than the change feed keeps" },
  DATABASE_UNAVAILABLE: { codes: ["database_unavailable"], meaning: "PostgreSQL cannot be reached or did not answer in time" },
  DEADLINE_EXCEEDED: { codes: ["deadline_exceeded"], meaning: "the caller's deadline passed (a refresh goes on and its token is cached)" },
  DRAINING: { codes: ["draining"], meaning: "the replica is shutting down" },
  ENDPOINTS_MISSING: { codes: ["provider_misconfigured"], meaning: "the provider has neither discovery nor the endpoints the operation needs", startupOnly: true },
  EXPIRED_STATE: { codes: ["authorization_session_invalid"], meaning: "the authorization session expired" },
  FIELD_LIMIT_EXCEEDED: { codes: ["invalid_argument"], meaning: "a request field is over its documented maximum (length or count)" },
  GRANT_EXCEEDS_POLICY: { codes: ["permission_denied"], meaning: "the integration holds scopes beyond what the service's policy allows" },
  INSECURE_ENDPOINT: { codes: ["provider_misconfigured"], meaning: "a provider endpoint is not HTTPS" },
  INTEGRATION_ID_CHANGED: { codes: ["already_exists"], meaning: "the account was connected concurrently under another integration id; retry with that one" },
  INTEGRATION_NEEDS_REAUTH: { codes: ["integration_needs_reauth"], meaning: "the provider refused the grant; the user must connect the account again" },
  INTEGRATION_NOT_FOUND: { codes: ["not_found"], meaning: "no such integration, or one the caller may not use" },
  INTERACTION_REQUIRED: { codes: ["authorization_denied", "integration_needs_reauth"], meaning: "the provider needs the user at its page (OIDC interaction_required)" },
  INTERNAL: { codes: ["internal"], meaning: "default reason: a broker fault" },
  INVALID_ARGUMENT: { codes: ["invalid_argument"], meaning: "default reason: a request field is wrong (BadRequest names it)" },
  INVALID_AUDIT_EVENT: { codes: ["internal"], meaning: "the broker built an audit event that breaks the event schema", guardOnly: true },
  INVALID_GRANT: { codes: ["integration_needs_reauth"], meaning: "the provider refused the refresh token (RFC 6749 §5.2 invalid_grant)", seenAs: "INTEGRATION_NEEDS_REAUTH" },
  INVALID_STATE: { codes: ["authorization_session_invalid"], meaning: "the authorization session is unknown, used, or belongs to someone else" },
  ISSUER_MISMATCH: { codes: ["authorization_session_invalid"], meaning: "the authorization response comes from another issuer (RFC 9207 mix-up defence)" },
  ISSUER_MISSING: { codes: ["authorization_session_invalid"], meaning: "the provider advertises RFC 9207 but its response has no iss" },
  KEY_NOT_FOUND: { codes: ["key_service_error"], meaning: "the transit key does not exist in Vault" },
  KEY_SERVICE_BAD_RESPONSE: { codes: ["key_service_error"], meaning: "Vault answered something the broker cannot use" },
  KEY_SERVICE_NOT_FOUND: { codes: ["key_service_error"], meaning: "Vault has nothing at the configured path" },
  KEY_SERVICE_PERMISSION_DENIED: { codes: ["key_service_error"], meaning: "Vault refused the broker's credentials" },
  KEY_SERVICE_REFUSED: { codes: ["key_service_error"], meaning: "Vault refused the request for another reason" },
  KEY_SERVICE_UNAVAILABLE: { codes: ["key_service_unavailable"], meaning: "Vault (or the local keyring) cannot be reached or is sealed" },
  KEY_VERSION_UNKNOWN: { codes: ["key_service_error"], meaning: "a ciphertext names a key version the local keyring does not have" },
  LISTEN_ADDRESS_UNAVAILABLE: { codes: ["failed_precondition"], meaning: "a listener address is in use or cannot be bound", startupOnly: true },
  LOCAL_KEYRING_INVALID: { codes: ["key_service_error"], meaning: "the local keyring file is not a valid keyring", startupOnly: true },
  LOCAL_KEYRING_LOCKED: { codes: ["key_service_unavailable"], meaning: "another process holds the local keyring's lock", startupOnly: true },
  LOCAL_KEYRING_REFUSED_IN_PRODUCTION: { codes: ["failed_precondition"], meaning: "NODE_ENV=production without Vault: the local keyring is refused", startupOnly: true },
  LOCAL_KEYRING_UNREADABLE: { codes: ["key_service_unavailable"], meaning: "the local keyring file cannot be read (the keys stay in memory; GetStatus and /readyz report the key service down)", probeOnly: true },
  LOCAL_SIGNING_KEY_INVALID: { codes: ["failed_precondition"], meaning: "the local signing key file is readable by group or others, corrupt, or cannot be imported", startupOnly: true },
  LOGIN_REQUIRED: { codes: ["authorization_denied", "integration_needs_reauth"], meaning: "the provider needs the user to sign in again (OIDC login_required)" },
  MALFORMED_REQUEST: { codes: ["invalid_argument"], meaning: "a request body cannot be decoded as the method's message (any protocol)" },
  MIGRATION_CHANGED: { codes: ["failed_precondition"], meaning: "an applied migration's file changed since it was applied", startupOnly: true },
  MIGRATION_FAILED: { codes: ["internal"], meaning: "a migration failed to apply", startupOnly: true },
  NONCE_MISMATCH: { codes: ["authorization_session_invalid"], meaning: "the ID token's nonce is not the session's (OIDC Core §3.1.3.7)" },
  NOT_FOUND: { codes: ["not_found"], meaning: "default reason: the thing asked for does not exist (a deleted integration, no stored token)" },
  NO_REFRESH_TOKEN: { codes: ["failed_precondition"], meaning: "the stored token is too short-lived and the provider granted no refresh token" },
  OPERATION_ABANDONED: { codes: ["deadline_exceeded"], meaning: "a read or refresh shared with other callers never finished and was given up" },
  PROVIDER_CIRCUIT_OPEN: { codes: ["provider_unavailable"], meaning: "the provider failed repeatedly; its circuit is open" },
  PROVIDER_CLIENT_REJECTED: { codes: ["provider_misconfigured"], meaning: "the provider rejected the broker's client credentials (invalid_client)" },
  PROVIDER_ERROR: { codes: ["provider_error"], meaning: "the provider answered something the broker cannot use" },
  PROVIDER_MISMATCH: { codes: ["authorization_session_invalid"], meaning: "the authorization session was started for another provider" },
  PROVIDER_NOT_ALLOWED: { codes: ["permission_denied"], meaning: "the service's policy does not allow the provider" },
  PROVIDER_NOT_CONFIGURED: { codes: ["failed_precondition"], meaning: "the provider is not configured on this broker" },
  PROVIDER_QUOTA_EXCEEDED: { codes: ["provider_rate_limited"], meaning: "the provider's quota is used up (YouTube's 403 quotaExceeded); its token endpoint is paused" },
  PROVIDER_RATE_LIMITED: { codes: ["provider_rate_limited"], meaning: "the provider answered 429; its token endpoint is paused" },
  PROVIDER_RESPONSE_INVALID: { codes: ["provider_error"], meaning: "the provider's response is not valid JSON or lacks required fields" },
  PROVIDER_TIMEOUT: { codes: ["provider_unavailable"], meaning: "the provider did not answer in time" },
  PROVIDER_UNAVAILABLE: { codes: ["provider_unavailable"], meaning: "the provider is down or answered temporarily_unavailable / server_error" },
  PROVIDER_UNREACHABLE: { codes: ["provider_unavailable"], meaning: "the provider cannot be reached (DNS, connection, TLS)" },
  RATE_LIMITED: { codes: ["rate_limited"], meaning: "the caller exceeded one of the broker's rate limits" },
  REFRESH_LEASE_LOST: { codes: ["provider_unavailable"], meaning: "the refresh lease passed to another replica before the request was sent" },
  REQUEST_TOO_LARGE: { codes: ["request_too_large"], meaning: "the request body, as sent or decompressed, is over limits.maxRequestBytes" },
  RETURN_TO_ALLOW_LIST_EMPTY: { codes: ["failed_precondition"], meaning: "no return_to is allowed: authorization.returnToAllowList is empty", startupOnly: true },
  RETURN_TO_ALLOW_LIST_INVALID: { codes: ["failed_precondition"], meaning: "an entry of authorization.returnToAllowList is not an absolute http(s) URL", startupOnly: true },
  ROTATED_TOKEN_LOST: { codes: ["integration_needs_reauth"], meaning: "a rotated refresh token died with a replica and the provider refused the stored one" },
  RPC_NOT_ALLOWED: { codes: ["permission_denied"], meaning: "the caller's role or policy does not allow the RPC" },
  SANDBOX_NOT_RUNNING: { codes: ["provider_misconfigured"], meaning: "the sandbox provider is configured but not running", startupOnly: true },
  SCOPE_NOT_ALLOWED: { codes: ["permission_denied"], meaning: "the service's policy does not allow a requested scope" },
  SCOPE_NOT_GRANTED: { codes: ["scope_not_granted"], meaning: "the grant lacks scopes the caller requires" },
  SCOPE_WIDENED: { codes: ["authorization_denied"], meaning: "the provider granted scopes the flow did not ask for; the grant was revoked" },
  STATE_MISMATCH: { codes: ["authorization_session_invalid"], meaning: "the authorization response carries another session's state (the broker finds the session by that state first: INVALID_STATE)", guardOnly: true },
  STATE_MISSING: { codes: ["authorization_session_invalid"], meaning: "the authorization response carries no state (the broker finds the session by its state first: INVALID_STATE)", guardOnly: true },
  TOKEN_LIFETIME_TOO_SHORT: { codes: ["failed_precondition"], meaning: "min_valid_for is longer than the provider's tokens live" },
  TRUSTED_ISSUER_INVALID: { codes: ["failed_precondition"], meaning: "a trusted JWT issuer cannot verify tokens as configured (iss twice, no accepted algorithm, no audience, no usable public key), or there is none and no local signing key", startupOnly: true },
  UNAUTHENTICATED: { codes: ["unauthenticated"], meaning: "missing, expired or untrusted credential" },
  USERINFO_ENDPOINT_MISSING: { codes: ["provider_misconfigured"], meaning: "the provider template needs a userinfo endpoint and none is known" },
  VAULT_CREDENTIALS_MISSING: { codes: ["failed_precondition"], meaning: "VAULT_ADDR is set without a token, AppRole or Kubernetes credentials", startupOnly: true },
  VAULT_KEY_MISSING: { codes: ["failed_precondition"], meaning: "the transit key does not exist and creating it is not allowed", startupOnly: true },
  VAULT_KEY_NOT_DERIVED: { codes: ["failed_precondition"], meaning: "the transit key is not a derived, non-convergent aes256-gcm96 key", startupOnly: true },
  VAULT_KUBERNETES_JWT_UNREADABLE: { codes: ["key_service_error"], meaning: "the Kubernetes service-account token for Vault login cannot be read" },
  VERIFIER_MISSING: { codes: ["authorization_session_invalid"], meaning: "the authorization session has no PKCE verifier" },
  WAIT_LIMIT_EXCEEDED: { codes: ["deadline_exceeded"], meaning: "the token did not arrive within tokens.maxWaitSeconds" },
  YOUTUBE_CHANNEL_MISSING: { codes: ["provider_error"], meaning: "the Google account has no YouTube channel" },
} as const satisfies Record<string, ErrorReasonEntry>;

export type ErrorReason = keyof typeof ERROR_REASONS;

/** For reasons that arrive from outside the process (another replica's notification). */
export function isErrorReason(value: string): value is ErrorReason {
  return Object.hasOwn(ERROR_REASONS, value);
}

/**
 * The codes whose upper-cased name is a reason of the catalogue: an error of such a code may be
 * raised without a more specific reason. Any other code must name one.
 */
export type CodeWithDefaultReason = { [C in BrokerErrorCode]: Uppercase<C> extends ErrorReason ? C : never }[BrokerErrorCode];

/** The reason of an error raised without a more specific one: the upper-cased code. */
export function defaultReason(code: CodeWithDefaultReason): ErrorReason {
  return code.toUpperCase() as Uppercase<CodeWithDefaultReason>;
}
