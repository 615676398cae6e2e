/**
 * Every reason of the key service, on both listeners: the status, `ErrorInfo` reason, domain and
 * metadata keys a caller receives when Vault cannot decrypt its token.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { startReasonWorld } from "../support/reason-world.js";
import { startVaultEmulator } from "../support/vault-transit-emulator.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { KEY_CASES, type KeysWorld } from "./error-reasons-wire-keys.cases.js";

let world: KeysWorld;

beforeAll(async () => {
  const vault = await startVaultEmulator();
  try {
    world = { ...(await startReasonWorld({ env: { VAULT_ADDR: vault.url, VAULT_TOKEN: vault.rootToken } })), vault };
  } catch (error) {
    await vault.close();
    throw error;
  }
});

afterAll(async () => {
  await world?.close();
  await world?.vault.close();
});

describe("the key service's refusals reach the caller", () => {
  itRefusesOnTheWire(KEY_CASES, () => world);
});
