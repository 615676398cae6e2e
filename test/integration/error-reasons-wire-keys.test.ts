/**
 * Every reason of the key service, on both listeners: the status, `ErrorInfo` reason, domain and
 * metadata keys a caller receives when Vault cannot decrypt its token.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { startReasonWorldAtVault } from "../support/reason-world.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { KEY_CASES, type KeysWorld } from "./error-reasons-wire-keys.cases.js";

let world: KeysWorld;

beforeAll(async () => {
  world = await startReasonWorldAtVault();
});

afterAll(async () => {
  await world?.close();
});

describe("the key service's refusals reach the caller", () => {
  itRefusesOnTheWire(KEY_CASES, () => world);
});
