/** The key service metrics decorator: one count and one latency sample per call, by operation and result. */
import { describe, expect, it } from "vitest";
import { BrokerError } from "../../src/domain/errors.js";
import type { Cipher } from "../../src/domain/ports.js";
import type { RotatableCipher } from "../../src/crypto/rotatable-cipher.js";
import { measureCipher } from "../../src/crypto/measured-cipher.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { parseExposition, series } from "../support/prometheus-text.js";

function fakeCipher(): RotatableCipher & { rotations: number } {
  let sealed = false;
  const fake = {
    kind: "fake",
    rotations: 0,
    async encrypt(input: { plaintext: string }) {
      if (sealed) throw new BrokerError("key_service_unavailable", "sealed");
      return `fake:v1:${input.plaintext}`;
    },
    async decrypt(input: { ciphertext: string }) {
      if (!input.ciphertext.startsWith("fake:v1:")) throw new BrokerError("key_service_error", "malformed", { reason: "CIPHERTEXT_MALFORMED" });
      return input.ciphertext.slice("fake:v1:".length);
    },
    async encryptBatch(inputs: ReadonlyArray<{ plaintext: string }>) {
      return inputs.map((i) => `fake:v1:${i.plaintext}`);
    },
    async decryptBatch(inputs: ReadonlyArray<{ ciphertext: string }>) {
      return inputs.map((i) => i.ciphertext.slice(8));
    },
    async rewrapBatch(inputs: ReadonlyArray<{ ciphertext: string }>) {
      return inputs.map((i) => i.ciphertext);
    },
    versionOf: () => 1,
    latestVersion: async () => 1,
    async check() {
      sealed = true;
      throw new Error("socket hang up");
    },
    async rotate() {
      fake.rotations += 1;
      return 2;
    },
    close: async () => undefined,
  };
  return fake;
}

describe("measureCipher", () => {
  it("counts calls by operation and result, a batch as one call", async () => {
    const metrics = createMetrics();
    const cipher = measureCipher(fakeCipher(), metrics);
    await cipher.encrypt({ plaintext: "a", context: "row" });
    await cipher.encryptBatch([{ plaintext: "a", context: "row" }, { plaintext: "b", context: "row" }]);
    await cipher.decrypt({ ciphertext: "fake:v1:a", context: "row" });
    await cipher.decryptBatch([{ ciphertext: "fake:v1:a", context: "row" }]);
    await cipher.rewrapBatch([{ ciphertext: "fake:v1:a", context: "row" }]);
    await cipher.latestVersion();
    await expect(cipher.decrypt({ ciphertext: "bogus", context: "row" })).rejects.toMatchObject({ code: "key_service_error" });
    await expect(cipher.check()).rejects.toThrow("socket hang up");
    await expect(cipher.encrypt({ plaintext: "a", context: "row" })).rejects.toMatchObject({ code: "key_service_unavailable" });

    const samples = parseExposition((await metrics.render()).body);
    expect(series(samples, "oauth_broker_key_service_requests_total")).toEqual({
      "operation=encrypt,result=success": 2,
      "operation=encrypt,result=key_service_unavailable": 1,
      "operation=decrypt,result=success": 2,
      "operation=decrypt,result=key_service_error": 1,
      "operation=rewrap,result=success": 1,
      "operation=latest_version,result=success": 1,
      "operation=check,result=internal": 1,
    });
    expect(series(samples, "oauth_broker_key_service_request_duration_seconds_count")).toEqual({
      "operation=encrypt": 3,
      "operation=decrypt": 3,
      "operation=rewrap": 1,
      "operation=latest_version": 1,
      "operation=check": 1,
    });
  });

  it("keeps the cipher's other members, rotation and kind included, and passes results through", async () => {
    const inner = fakeCipher();
    const cipher = measureCipher(inner, createMetrics());
    expect(cipher.kind).toBe("fake");
    expect(await cipher.rotate()).toBe(2);
    expect(inner.rotations).toBe(1);
    expect(cipher.versionOf("fake:v1:x")).toBe(1);
    expect(await cipher.decryptBatch([{ ciphertext: "fake:v1:x", context: "row" }])).toEqual(["x"]);
    const plain: Cipher = measureCipher<Cipher>(inner, createMetrics());
    expect(await plain.encrypt({ plaintext: "y", context: "row" })).toBe("fake:v1:y");
  });
});
