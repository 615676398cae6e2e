/**
 * Reasons of time running out: the caller's deadline passing while a refresh is under way, and
 * a refresh slower than `tokens.maxWaitSeconds`. The deadlines are told to the broker only, so
 * the answer is the broker's, not the client library's own timeout.
 */
import { Code } from "@connectrpc/connect";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import type { ReasonWorld } from "../support/reason-world.js";
import type { WireCaller } from "../support/wire-call.js";
import { userFor, type WireCases } from "../support/wire-cases.js";

/** `tokens.maxWaitSeconds` of the world these rows run in. */
export const MAX_WAIT_SECONDS = 1;
/** How long the peer takes to answer a refresh or code exchange these rows make slow: well past every bound. */
const SLOW_ANSWER_MS = 8_000;
const CALLER_DEADLINE_MS = 400;

/** A provider with a generous timeout, so the peer's slowness meets the broker's waits first. */
export const PATIENT_PROVIDER = "patient";

async function slowRefresh(world: ReasonWorld, wire: WireCaller, tag: string, serverDeadlineMs?: number) {
  const integrationId = await world.connect(userFor(tag, wire), { provider: PATIENT_PROVIDER });
  await world.expire(integrationId);
  world.peer.script("token", { delayMs: SLOW_ANSWER_MS, body: {} }, 1);
  try {
    return await wire.unary(TokenService.method.getAccessToken, { integrationId }, { authorization: world.admin, serverDeadlineMs });
  } finally {
    world.peer.reset();
  }
}

export const DEADLINE_CASES = {
  DEADLINE_EXCEEDED: {
    status: Code.DeadlineExceeded,
    metadataKeys: [],
    retry: true,
    produce: (world, wire) => slowRefresh(world, wire, "DEADLINE_EXCEEDED", CALLER_DEADLINE_MS),
  },
  WAIT_LIMIT_EXCEEDED: {
    status: Code.DeadlineExceeded,
    metadataKeys: [],
    retry: true,
    produce: (world, wire) => slowRefresh(world, wire, "WAIT_LIMIT_EXCEEDED"),
  },
} satisfies WireCases<ReasonWorld>;
