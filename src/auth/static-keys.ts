/**
 * Static verification keys for an issuer without a JWKS URL. Each configured string is a JWK, a
 * JWK Set, an SPKI public key PEM or an X.509 certificate PEM; all become public JWKs so one
 * key-selection rule (`kid`, `alg`, `use`, RFC 7517 §4) serves static and remote keys alike.
 */
import { createPublicKey } from "node:crypto";
import type { JWK } from "jose";
import { BrokerError } from "../domain/errors.js";

/** RFC 7518 §6.2.2, §6.3.2 and RFC 8037 §2: private and symmetric key members. */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] as const;

export function parseStaticKeys(issuerName: string, keys: readonly string[]): JWK[] {
  return keys.flatMap((text, index) => {
    const where = `issuer ${issuerName}: static key #${index + 1}`;
    const trimmed = text.trim();
    const jwks = trimmed.startsWith("{") ? parseJson(trimmed, where) : [fromPem(trimmed, where)];
    return jwks.map((jwk) => publicOnly(jwk, where));
  });
}

function parseJson(text: string, where: string): JWK[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BrokerError("failed_precondition", `${where} is not valid JSON`, { cause: error, reason: "TRUSTED_ISSUER_INVALID" });
  }
  if (isRecord(value) && Array.isArray(value["keys"])) {
    return value["keys"].map((key) => {
      if (!isRecord(key)) throw new BrokerError("failed_precondition", `${where} holds a key that is not a JWK`, { reason: "TRUSTED_ISSUER_INVALID" });
      return key as JWK;
    });
  }
  if (!isRecord(value)) throw new BrokerError("failed_precondition", `${where} is not a JWK`, { reason: "TRUSTED_ISSUER_INVALID" });
  return [value as JWK];
}

function fromPem(pem: string, where: string): JWK {
  try {
    // createPublicKey accepts SPKI, PKCS#1 and certificate PEMs (and derives the public half of a
    // private key, which publicOnly then keeps).
    return createPublicKey(pem).export({ format: "jwk" }) as JWK;
  } catch (error) {
    throw new BrokerError("failed_precondition", `${where} is neither a JWK nor a public key or certificate PEM`, {
      cause: error,
      reason: "TRUSTED_ISSUER_INVALID",
    });
  }
}

function publicOnly(jwk: JWK, where: string): JWK {
  if (jwk.kty === "oct" || jwk.kty === undefined) {
    // Symmetric keys would let anyone holding the verification key mint tokens.
    throw new BrokerError("failed_precondition", `${where}: only public keys (RSA, EC, OKP) are accepted`, { reason: "TRUSTED_ISSUER_INVALID" });
  }
  const copy: Record<string, unknown> = { ...jwk };
  for (const member of PRIVATE_MEMBERS) delete copy[member];
  return copy as JWK;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
