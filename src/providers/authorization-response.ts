/**
 * Checks the parameters a provider redirected the browser back with, before any code is sent
 * to a token endpoint (RFC 6749 §4.1.2, RFC 9207, oauth-client-security.md §1 and §3).
 */
import { timingSafeEqual } from "node:crypto";
import type { ErrorReason } from "../domain/error-reasons.js";
import { BrokerError } from "../domain/errors.js";

export interface AuthorizationResponseExpectations {
  readonly provider: string;
  readonly state: string;
  /** The provider's issuer identifier, when known: a different `iss` is a mix-up attack. */
  readonly issuer?: string | undefined;
  /** RFC 9207 §2.4: the provider advertises `authorization_response_iss_parameter_supported`. */
  readonly issuerRequired?: boolean | undefined;
}

/** Errors the user (or the provider's policy) produced, with their reasons: nothing is wrong with the broker. */
const DENIAL_REASONS: ReadonlyMap<string, ErrorReason> = new Map([
  ["access_denied", "ACCESS_DENIED"],
  ["consent_required", "CONSENT_REQUIRED"],
  ["interaction_required", "INTERACTION_REQUIRED"],
  ["login_required", "LOGIN_REQUIRED"],
  ["account_selection_required", "ACCOUNT_SELECTION_REQUIRED"],
]);
/** RFC 6749 §4.1.2.1: errors that mean the broker's request or registration is wrong. */
const CONFIGURATION_ERRORS = new Set([
  "invalid_request",
  "unauthorized_client",
  "unsupported_response_type",
  "invalid_scope",
  "invalid_client",
]);

/** Returns the authorization code; throws a `BrokerError` for anything else. */
export function readAuthorizationResponse(callbackUrl: URL, expected: AuthorizationResponseExpectations): string {
  const params = callbackUrl.searchParams;
  const metadata = { provider: expected.provider };
  const state = params.get("state");
  if (state === null || !sameString(state, expected.state)) {
    throw new BrokerError(
      "authorization_session_invalid",
      `the authorization response for provider "${expected.provider}" does not carry the state of this session`,
      { reason: state === null ? "STATE_MISSING" : "STATE_MISMATCH", metadata },
    );
  }
  const iss = params.get("iss");
  if (iss !== null && expected.issuer !== undefined && iss !== expected.issuer) {
    throw new BrokerError(
      "authorization_session_invalid",
      `the authorization response was issued by another server than provider "${expected.provider}" (RFC 9207 mix-up defence)`,
      { reason: "ISSUER_MISMATCH", metadata },
    );
  }
  if (iss === null && expected.issuerRequired === true) {
    throw new BrokerError(
      "authorization_session_invalid",
      `provider "${expected.provider}" advertises RFC 9207 but its authorization response has no "iss"`,
      { reason: "ISSUER_MISSING", metadata },
    );
  }
  const error = params.get("error");
  if (error !== null) {
    const withError = { ...metadata, error: error.slice(0, 64) };
    const denial = DENIAL_REASONS.get(error);
    if (denial !== undefined) {
      throw new BrokerError("authorization_denied", `the authorization at provider "${expected.provider}" was refused (${error})`, {
        reason: denial,
        metadata: withError,
      });
    }
    if (error === "temporarily_unavailable" || error === "server_error") {
      throw new BrokerError("provider_unavailable", `provider "${expected.provider}" could not complete the authorization (${error}); try again later`, {
        reason: "PROVIDER_UNAVAILABLE",
        metadata: withError,
        retryAfterMs: 5_000,
      });
    }
    if (CONFIGURATION_ERRORS.has(error)) {
      throw new BrokerError(
        "provider_misconfigured",
        `provider "${expected.provider}" rejected the authorization request (${error}); check the client registration and scopes`,
        { reason: "AUTHORIZATION_REQUEST_REJECTED", metadata: withError },
      );
    }
    throw new BrokerError("provider_error", `provider "${expected.provider}" answered the authorization with an error`, {
      reason: "AUTHORIZATION_ERROR",
      metadata: withError,
    });
  }
  const code = params.get("code");
  if (code === null || code === "") {
    throw new BrokerError("provider_error", `the authorization response of provider "${expected.provider}" has no code`, {
      reason: "CODE_MISSING",
      metadata,
    });
  }
  return code;
}

function sameString(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
