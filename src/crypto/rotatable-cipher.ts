/**
 * A `Cipher` whose key can be rotated by the broker itself. Rotation adds a key version; old
 * versions stay decryptable, so reads keep working until every ciphertext has been re-wrapped
 * (`jobs/rewrap.ts`) and the operator raises the minimum decryption version.
 */
import type { Cipher } from "../domain/ports.js";

export type RotatableCipher = Cipher & {
  /** Adds a key version and returns it; new ciphertexts use it from now on. */
  rotate(): Promise<number>;
};
