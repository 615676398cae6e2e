/**
 * Reasons of races and stalls inside a token read, on both listeners: the status, `ErrorInfo`
 * reason, domain and metadata keys a caller of GetAccessToken receives.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { startReasonWorldAtVault } from "../support/reason-world.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { MAX_WAIT_SECONDS, RACE_CASES, type RacesWorld } from "./error-reasons-wire-races.cases.js";

let world: RacesWorld;

beforeAll(async () => {
  world = await startReasonWorldAtVault({ tokensYaml: `  maxWaitSeconds: ${MAX_WAIT_SECONDS}` });
});

afterAll(async () => {
  await world?.close();
});

describe("races and stalls inside a token read reach the caller", () => {
  itRefusesOnTheWire(RACE_CASES, () => world);
});
