/**
 * Reasons of GetAccessToken and of the calls around it: who may ask, which integration is
 * meant, what the stored grant allows, and what the provider answers when the token is
 * refreshed (the scripted peer's refresh answers, each provider with its own pause and circuit).
 */
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { expect } from "vitest";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.js";
import { AuditService } from "../../src/gen/oauthbroker/v1/audit_service_pb.js";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { ROTATED_TOKEN_LOST } from "../../src/domain/tokens/refresh-takeover.js";
import type { ScriptedAnswer } from "../support/peers/scripted-oauth2-peer.js";
import type { ReasonWorld } from "../support/reason-world.js";
import { refusalOf, type WireCaller } from "../support/wire-call.js";
import { userFor, type WireCase, type WireCases } from "../support/wire-cases.js";

/** A connected integration whose access token has expired: the next call refreshes it at the peer. */
async function expiredIntegration(world: ReasonWorld, user: string, provider = "lookalike"): Promise<string> {
  const integrationId = await world.connect(user, { provider });
  await world.expire(integrationId);
  return integrationId;
}

function getToken(world: ReasonWorld, wire: WireCaller, integrationId: string) {
  return wire.unary(TokenService.method.getAccessToken, { integrationId }, { authorization: world.admin });
}

/** The refresh meets `answer` (`times` times: set-up calls before the row's own see the first ones). */
function refreshAnswers(tag: string, answer: ScriptedAnswer, status: Code, metadataKeys: string[], options: { provider?: string; before?: number } = {}): WireCase<ReasonWorld> {
  return {
    status,
    metadataKeys,
    produce: async (world, wire) => {
      const integrationId = await expiredIntegration(world, userFor(tag, wire), options.provider === undefined ? "lookalike" : `${options.provider}-${wire.wire}`);
      world.peer.script("token", answer, (options.before ?? 0) + 1);
      try {
        for (let i = 0; i < (options.before ?? 0); i++) await refusalOf(getToken(world, world.callers.connect, integrationId));
        return await getToken(world, wire, integrationId);
      } finally {
        world.peer.reset();
      }
    },
  };
}

const ANSWER_KEYS = ["provider", "operation", "http_status"];

export const TOKEN_CASES = {
  UNAUTHENTICATED: { status: Code.Unauthenticated, metadataKeys: [], produce: (_world, wire) => wire.unary(ProviderService.method.listProviders, {}) },
  RPC_NOT_ALLOWED: {
    status: Code.PermissionDenied,
    metadataKeys: ["method"],
    produce: async (world, wire) => wire.unary(AuditService.method.listAuditEvents, {}, { authorization: await world.broker.bearer("curious-user", "user") }),
  },
  CANNOT_ACT_FOR_USERS: {
    status: Code.PermissionDenied,
    metadataKeys: ["service"],
    produce: async (world, wire) =>
      wire.unary(TokenService.method.getAccessToken, { userId: "alice", provider: "lookalike" }, { authorization: await world.broker.bearer("billing", "service") }),
  },
  PROVIDER_NOT_ALLOWED: {
    status: Code.PermissionDenied,
    metadataKeys: ["provider"],
    produce: async (world, wire) =>
      wire.unary(TokenService.method.getAccessToken, { userId: "alice", provider: "lookalike-b" }, { authorization: await world.broker.bearer("reports", "service") }),
  },
  SCOPE_NOT_ALLOWED: {
    status: Code.PermissionDenied,
    metadataKeys: ["provider", "scopes"],
    produce: async (world, wire) => {
      const user = userFor("SCOPE_NOT_ALLOWED", wire);
      await world.connect(user);
      return wire.unary(TokenService.method.getAccessToken, { userId: user, provider: "lookalike", scopes: ["write"] }, { authorization: await world.broker.bearer("reports", "service") });
    },
  },
  GRANT_EXCEEDS_POLICY: {
    status: Code.PermissionDenied,
    metadataKeys: ["provider", "scopes"],
    produce: async (world, wire) => {
      const user = userFor("GRANT_EXCEEDS_POLICY", wire);
      await world.connect(user, { scopes: ["read", "write"] });
      return wire.unary(TokenService.method.getAccessToken, { userId: user, provider: "lookalike" }, { authorization: await world.broker.bearer("reports", "service") });
    },
  },
  INTEGRATION_NOT_FOUND: { status: Code.NotFound, metadataKeys: [], produce: (world, wire) => getToken(world, wire, randomUUID()) },
  NOT_FOUND: {
    status: Code.NotFound,
    metadataKeys: [],
    produce: (_world, wire) => wire.unary(Health.method.check, { service: "no.such.Service" }),
  },
  AMBIGUOUS_INTEGRATION: {
    status: Code.FailedPrecondition,
    metadataKeys: [],
    produce: async (world, wire) => {
      const user = userFor("AMBIGUOUS_INTEGRATION", wire);
      await world.connect(user, { account: `${user}-work` });
      await world.connect(user, { account: `${user}-home` });
      return wire.unary(TokenService.method.getAccessToken, { userId: user, provider: "lookalike" }, { authorization: world.admin });
    },
  },
  SCOPE_NOT_GRANTED: {
    status: Code.FailedPrecondition,
    metadataKeys: ["integration_id", "provider", "missing_scopes"],
    produce: async (world, wire) => {
      const integrationId = await world.connect(userFor("SCOPE_NOT_GRANTED", wire));
      return wire.unary(TokenService.method.getAccessToken, { integrationId, scopes: ["write"] }, { authorization: world.admin });
    },
  },
  TOKEN_LIFETIME_TOO_SHORT: {
    status: Code.FailedPrecondition,
    metadataKeys: ["integration_id", "provider", "token_lifetime_seconds"],
    produce: async (world, wire) => {
      // The provider's tokens live a minute: the code exchange's, then the refresh's the call waits for.
      const user = userFor("TOKEN_LIFETIME_TOO_SHORT", wire);
      world.peer.script("token", { body: { access_token: `at-${user}`, token_type: "Bearer", expires_in: 60, refresh_token: `rt-${user}-1` } }, 2);
      world.peer.script("userinfo", { body: { sub: user } }, 1);
      const integrationId = await world.connect(user);
      return wire.unary(TokenService.method.getAccessToken, { integrationId, minValidFor: { seconds: 600n } }, { authorization: world.admin });
    },
  },
  NO_REFRESH_TOKEN: {
    status: Code.FailedPrecondition,
    metadataKeys: ["integration_id", "provider", "access_token_expire_time"],
    produce: async (world, wire) => {
      const user = userFor("NO_REFRESH_TOKEN", wire);
      world.peer.script("token", { body: { access_token: `at-${user}`, token_type: "Bearer", expires_in: 3600 } }, 1);
      world.peer.script("userinfo", { body: { sub: user } }, 1);
      const integrationId = await world.connect(user);
      await world.expire(integrationId);
      return getToken(world, wire, integrationId);
    },
  },
  // Answered as the integration's new state, the provider's error as its cause.
  INVALID_GRANT: {
    ...refreshAnswers("INVALID_GRANT", { status: 400, body: { error: "invalid_grant" } }, Code.FailedPrecondition, ["integration_id", "provider", "cause"]),
    check: (refusal) => expect(refusal.metadata["cause"]).toBe("invalid_grant"),
  },
  INTEGRATION_NEEDS_REAUTH: refreshAnswers("INTEGRATION_NEEDS_REAUTH", { status: 400, body: { error: "invalid_grant" } }, Code.FailedPrecondition, ["integration_id", "provider", "cause"], { before: 1 }),
  ROTATED_TOKEN_LOST: {
    status: Code.FailedPrecondition,
    metadataKeys: ["integration_id", "provider", "cause"],
    produce: async (world, wire) => {
      // What a replica that died with a rotated refresh token in flight leaves behind (refresh-takeover.ts).
      const integrationId = await world.connect(userFor("ROTATED_TOKEN_LOST", wire));
      await world.db.sql`update integrations set status = 'needs_reauth', status_reason = ${ROTATED_TOKEN_LOST} where id = ${integrationId}`;
      return getToken(world, wire, integrationId);
    },
  },
  PROVIDER_RATE_LIMITED: refreshAnswers("PROVIDER_RATE_LIMITED", { status: 429, body: { error: "rate_limited" }, headers: { "retry-after": "600" } }, Code.ResourceExhausted, [...ANSWER_KEYS, "error", "retry_after_seconds"], {
    provider: "paused",
  }),
  PROVIDER_CIRCUIT_OPEN: refreshAnswers("PROVIDER_CIRCUIT_OPEN", { status: 503, body: { error: "server_error" } }, Code.Unavailable, ["provider"], { provider: "tripped", before: 5 }),
  CURSOR_EXPIRED: {
    status: Code.FailedPrecondition,
    metadataKeys: ["oldest_resumable_cursor"],
    produce: async (world, wire) => {
      await world.connect(userFor("CURSOR_EXPIRED", wire));
      const first = await world.callers.connect.firstOfStream(IntegrationService.method.watchIntegrations, {}, { authorization: world.admin });
      // Retention purged the feed past this reader, as the housekeeping job records it.
      await world.db.sql`insert into integration_events_horizon (purged_through) select coalesce(max(id), 0) + 1 from integration_events
                         on conflict (id) do update set purged_through = excluded.purged_through`;
      return wire.firstOfStream(IntegrationService.method.watchIntegrations, { cursor: first?.cursor ?? "" }, { authorization: world.admin });
    },
  },
} satisfies WireCases<ReasonWorld>;

export const TOKEN_POLICIES_YAML = [
  "policies:",
  "  - service: billing",
  "    providers: [lookalike]",
  '    scopes: ["*"]',
  "  - service: reports",
  "    providers: [lookalike]",
  "    scopes: [read]",
  "    actForUsers: true",
  "    strict: true",
].join("\n");
