/**
 * Every reason of time running out, on both listeners: the status, `ErrorInfo` reason, domain
 * and metadata keys a caller receives when its deadline or the broker's wait limit passes.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { startReasonWorld, type ReasonWorld } from "../support/reason-world.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { DEADLINE_CASES, MAX_WAIT_SECONDS, PATIENT_PROVIDER } from "./error-reasons-wire-deadlines.cases.js";

let world: ReasonWorld;

beforeAll(async () => {
  world = await startReasonWorld({
    extraPeerProviders: [{ id: PATIENT_PROVIDER, timeoutMs: 20_000 }],
    tokensYaml: `  maxWaitSeconds: ${MAX_WAIT_SECONDS}`,
  });
});

afterAll(async () => {
  await world?.close();
});

describe("time running out is answered on the wire", () => {
  itRefusesOnTheWire(DEADLINE_CASES, () => world);
});
