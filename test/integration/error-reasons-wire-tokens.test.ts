/**
 * Every reason of GetAccessToken and the calls around it, on both listeners: the status,
 * `ErrorInfo` reason, domain and metadata keys a caller receives.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { startReasonWorld, type ReasonWorld } from "../support/reason-world.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { TOKEN_CASES, TOKEN_POLICIES_YAML } from "./error-reasons-wire-tokens.cases.js";

let world: ReasonWorld;

beforeAll(async () => {
  world = await startReasonWorld({ yaml: TOKEN_POLICIES_YAML });
});

afterAll(async () => {
  await world?.close();
});

describe("token calls refuse on the wire", () => {
  itRefusesOnTheWire(TOKEN_CASES, () => world);
});
