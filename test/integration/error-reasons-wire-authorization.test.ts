/**
 * Every reason of the authorization flow, on both listeners: the status, `ErrorInfo` reason,
 * domain and metadata keys a caller of StartAuthorization or CompleteAuthorization receives.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { startReasonWorld, type ReasonWorld } from "../support/reason-world.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { AUTHORIZATION_CASES, authorizationProvidersYaml, START_AUTHORIZATION_BURST } from "./error-reasons-wire-authorization.cases.js";

let world: ReasonWorld;

beforeAll(async () => {
  world = await startReasonWorld({
    providersYaml: authorizationProvidersYaml,
    limitsYaml: `  startAuthorizationPerUser: { ratePerSecond: 0.001, burst: ${START_AUTHORIZATION_BURST} }`,
  });
});

afterAll(async () => {
  await world?.close();
});

describe("the authorization flow refuses on the wire", () => {
  itRefusesOnTheWire(AUTHORIZATION_CASES, () => world);
});
