/**
 * Ciphertexts carry their backend and key version in a prefix (`vault:v3:…`, `local:v2:…`), so
 * the re-wrap job can find what is below the latest version without decrypting anything.
 */
import { BrokerError } from "../domain/errors.js";

export type CiphertextScheme = "vault" | "local";

const PATTERN = /^(vault|local):v(\d{1,9}):/;

/** The key version in a ciphertext's prefix; a `key_service_error` when the prefix is not `scheme`'s. */
export function ciphertextVersion(ciphertext: string, scheme: CiphertextScheme): number {
  const match = PATTERN.exec(ciphertext);
  const version = match && match[1] === scheme ? Number(match[2]) : 0;
  if (version < 1) {
    throw new BrokerError("key_service_error", `stored ciphertext is not a ${scheme}:vN: ciphertext`, {
      reason: "CIPHERTEXT_MALFORMED",
      metadata: { scheme },
    });
  }
  return version;
}
