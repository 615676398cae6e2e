/**
 * Key service metrics as a decorator over any `Cipher`, so Vault transit and the local keyring
 * are measured the same way and neither implementation carries metrics code. A batch is one
 * call (one round trip to Vault), which is what latency and error ratios should be about.
 * Results are "success" or the `BrokerError` code, a closed set: an unknown failure counts as
 * "internal", the code the caller ends up seeing for it.
 */
import { isBrokerError } from "../domain/errors.js";
import type { Cipher } from "../domain/ports.js";
import type { Metrics } from "../observability/metrics.js";

export type KeyServiceOperation = "encrypt" | "decrypt" | "rewrap" | "check" | "latest_version";

export type KeyServiceMetrics = Pick<Metrics, "keyServiceRequests" | "keyServiceRequestSeconds">;

/**
 * Returns `cipher` with every key service call measured. Members beyond the `Cipher` port (a
 * `RotatableCipher`'s `rotate`) are kept as they are: rotation runs from the CLI, not here.
 */
export function measureCipher<C extends Cipher>(cipher: C, metrics: KeyServiceMetrics): C {
  async function measured<T>(operation: KeyServiceOperation, call: () => Promise<T>): Promise<T> {
    const started = performance.now();
    let result = "success";
    try {
      return await call();
    } catch (error) {
      result = isBrokerError(error) ? error.code : "internal";
      throw error;
    } finally {
      metrics.keyServiceRequests.inc({ operation, result });
      metrics.keyServiceRequestSeconds.observe({ operation }, (performance.now() - started) / 1000);
    }
  }

  return {
    ...cipher,
    encrypt: (input) => measured("encrypt", () => cipher.encrypt(input)),
    decrypt: (input) => measured("decrypt", () => cipher.decrypt(input)),
    encryptBatch: (inputs) => measured("encrypt", () => cipher.encryptBatch(inputs)),
    decryptBatch: (inputs) => measured("decrypt", () => cipher.decryptBatch(inputs)),
    rewrapBatch: (inputs) => measured("rewrap", () => cipher.rewrapBatch(inputs)),
    latestVersion: () => measured("latest_version", () => cipher.latestVersion()),
    check: () => measured("check", () => cipher.check()),
  };
}
