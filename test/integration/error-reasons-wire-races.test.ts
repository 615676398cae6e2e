/**
 * Reasons of races and stalls inside a token read, on both listeners: the status, `ErrorInfo`
 * reason, domain and metadata keys a caller of GetAccessToken receives.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { startReasonWorld } from "../support/reason-world.js";
import { startVaultEmulator } from "../support/vault-transit-emulator.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { MAX_WAIT_SECONDS, RACE_CASES, type RacesWorld } from "./error-reasons-wire-races.cases.js";

let world: RacesWorld;

beforeAll(async () => {
  const vault = await startVaultEmulator();
  try {
    const env = { VAULT_ADDR: vault.url, VAULT_TOKEN: vault.rootToken };
    world = { ...(await startReasonWorld({ env, tokensYaml: `  maxWaitSeconds: ${MAX_WAIT_SECONDS}` })), vault };
  } catch (error) {
    await vault.close();
    throw error;
  }
});

afterAll(async () => {
  await world?.close();
  await world?.vault.close();
});

describe("races and stalls inside a token read reach the caller", () => {
  itRefusesOnTheWire(RACE_CASES, () => world);
});
