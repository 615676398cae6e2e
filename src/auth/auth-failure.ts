/**
 * Why a credential was refused: the reasons the authenticator logs and audits, and how jose's
 * failures map to them. The caller never learns any of this (authenticator.ts).
 */

/**
 * Why a credential was refused, in words stable enough to count and alert on (audit `auth.failed`
 * reason). The caller never learns it: every refusal answers "missing or invalid credentials".
 */
export type AuthFailureReason =
  | "missing_credentials"
  | "not_bearer"
  | "token_too_long"
  | "malformed"
  | "algorithm_not_allowed"
  | "unknown_issuer"
  | "wrong_audience"
  | "expired"
  | "not_yet_valid"
  | "lifetime_too_long"
  | "bad_signature"
  | "unknown_key"
  | "invalid_claims"
  | "issuer_keys_unavailable"
  | "authenticator_closed"
  | "unexpected";

/** The `cause` of the `unauthenticated` error: kept server-side (audit, logs), never serialized. */
export class CredentialRejected extends Error {
  override readonly name = "CredentialRejected";
  constructor(
    readonly reason: AuthFailureReason,
    message: string,
  ) {
    super(message);
  }
}

/** The reason behind an `unauthenticated` error the authenticator threw, if it was one. */
export function authFailureReason(error: unknown): AuthFailureReason | undefined {
  const cause = error instanceof Error ? error.cause : undefined;
  return cause instanceof CredentialRejected ? cause.reason : undefined;
}

/** Raised internally with the reason to log; the caller only ever sees the generic error. */
export class Rejection extends Error {
  constructor(
    readonly reason: AuthFailureReason,
    message: string,
    readonly level: "debug" | "warn" = "warn",
    readonly details: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

/** jose's error codes (and, for claim checks, the claim) mapped to the audit vocabulary. */
export function verificationFailure(error: unknown, code: string | undefined): AuthFailureReason {
  switch (code) {
    case "ERR_JWT_EXPIRED":
      return "expired";
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "bad_signature";
    case "ERR_JWKS_NO_MATCHING_KEY":
      return "unknown_key";
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return "algorithm_not_allowed";
    case "ERR_JWS_INVALID":
    case "ERR_JWT_INVALID":
      return "malformed";
    case "ERR_JWKS_TIMEOUT":
    case "ERR_JWKS_INVALID":
    case "ERR_JOSE_GENERIC":
      return "issuer_keys_unavailable";
    case "ERR_JWT_CLAIM_VALIDATION_FAILED": {
      const claimName = (error as { claim?: unknown }).claim;
      if (claimName === "aud") return "wrong_audience";
      if (claimName === "iss") return "unknown_issuer";
      if (claimName === "nbf" || claimName === "iat") return "not_yet_valid";
      return "invalid_claims";
    }
    default:
      return "unexpected";
  }
}

export function joseCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
