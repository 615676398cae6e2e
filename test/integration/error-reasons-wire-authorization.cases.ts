/**
 * Reasons of the authorization flow: StartAuthorization and CompleteAuthorization, with the
 * provider's redirect parameters as an app forwards them and the scripted peer's token and
 * userinfo answers.
 */
import { Code } from "@connectrpc/connect";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import type { ScriptedAnswer, ScriptedEndpoint } from "../support/peers/scripted-oauth2-peer.js";
import type { ReasonWorld } from "../support/reason-world.js";
import type { WireCaller } from "../support/wire-call.js";
import { userFor, type WireCase, type WireCases } from "../support/wire-cases.js";

async function complete(world: ReasonWorld, wire: WireCaller, tag: string, fields: { code?: string; error?: string; iss?: string; provider?: string; sessionProvider?: string }) {
  const user = userFor(tag, wire);
  const state = await world.session(user, fields.sessionProvider ?? fields.provider ?? "lookalike");
  return wire.unary(
    AuthorizationService.method.completeAuthorization,
    { provider: fields.provider ?? "lookalike", state, code: fields.code ?? (fields.error === undefined ? `code-for-${user}` : ""), error: fields.error ?? "", iss: fields.iss ?? "" },
    { authorization: world.admin },
  );
}

/** The provider redirected back with `error`: the user's or the provider's refusal. */
function redirectError(error: string, status: Code, retry?: boolean): WireCase<ReasonWorld> {
  return { status, metadataKeys: ["provider", "error"], ...(retry === undefined ? {} : { retry }), produce: (world, wire) => complete(world, wire, error, { error }) };
}

/** The code exchange (or the account lookup after it) meets the scripted answer. */
function peerAnswers(endpoint: ScriptedEndpoint, answer: ScriptedAnswer, status: Code, metadataKeys: string[], tag: string): WireCase<ReasonWorld> {
  return {
    status,
    metadataKeys,
    produce: async (world, wire) => {
      const user = userFor(tag, wire);
      const state = await world.session(user);
      world.peer.script(endpoint, answer, 1);
      try {
        return await wire.unary(AuthorizationService.method.completeAuthorization, { provider: "lookalike", state, code: `code-for-${user}` }, { authorization: world.admin });
      } finally {
        world.peer.reset();
      }
    },
  };
}

const WIRE_STATUS = ["provider", "operation", "http_status"];

export const AUTHORIZATION_CASES = {
  ACCESS_DENIED: redirectError("access_denied", Code.PermissionDenied),
  ACCOUNT_SELECTION_REQUIRED: redirectError("account_selection_required", Code.PermissionDenied),
  CONSENT_REQUIRED: redirectError("consent_required", Code.PermissionDenied),
  INTERACTION_REQUIRED: redirectError("interaction_required", Code.PermissionDenied),
  LOGIN_REQUIRED: redirectError("login_required", Code.PermissionDenied),
  AUTHORIZATION_ERROR: redirectError("mystery_failure", Code.Unavailable),
  AUTHORIZATION_REQUEST_REJECTED: redirectError("invalid_scope", Code.FailedPrecondition),
  PROVIDER_UNAVAILABLE: redirectError("temporarily_unavailable", Code.Unavailable, true),
  INVALID_STATE: {
    status: Code.FailedPrecondition,
    metadataKeys: ["provider"],
    produce: (world, wire) => wire.unary(AuthorizationService.method.completeAuthorization, { provider: "lookalike", state: "a-state-no-session-has", code: "code-for-nobody" }, { authorization: world.admin }),
  },
  PROVIDER_MISMATCH: {
    status: Code.FailedPrecondition,
    metadataKeys: ["provider"],
    produce: (world, wire) => complete(world, wire, "PROVIDER_MISMATCH", { sessionProvider: "lookalike", provider: "lookalike-b" }),
  },
  EXPIRED_STATE: {
    status: Code.FailedPrecondition,
    metadataKeys: ["provider"],
    produce: async (world, wire) => {
      const user = userFor("EXPIRED_STATE", wire);
      const state = await world.session(user);
      await world.db.sql`update authorization_sessions set expires_at = now() - interval '1 minute' where user_id = ${user}`;
      return wire.unary(AuthorizationService.method.completeAuthorization, { provider: "lookalike", state, code: `code-for-${user}` }, { authorization: world.admin });
    },
  },
  VERIFIER_MISSING: {
    status: Code.FailedPrecondition,
    metadataKeys: ["provider"],
    produce: async (world, wire) => {
      const user = userFor("VERIFIER_MISSING", wire);
      const state = await world.session(user);
      await world.db.sql`update authorization_sessions set code_verifier_ciphertext = null where user_id = ${user}`;
      return wire.unary(AuthorizationService.method.completeAuthorization, { provider: "lookalike", state, code: `code-for-${user}` }, { authorization: world.admin });
    },
  },
  AUTHORIZATION_CODE_REJECTED: peerAnswers("token", { status: 400, body: { error: "invalid_grant" } }, Code.FailedPrecondition, [...WIRE_STATUS, "error"], "AUTHORIZATION_CODE_REJECTED"),
  PROVIDER_CLIENT_REJECTED: peerAnswers("token", { status: 401, body: { error: "invalid_client" } }, Code.FailedPrecondition, [...WIRE_STATUS, "error"], "PROVIDER_CLIENT_REJECTED"),
  PROVIDER_ERROR: peerAnswers("token", { status: 400, body: { error: "unsupported_grant_type" } }, Code.Unavailable, [...WIRE_STATUS, "error"], "PROVIDER_ERROR"),
  PROVIDER_RESPONSE_INVALID: peerAnswers("token", { body: { token_type: "Bearer", expires_in: 3600 } }, Code.Unavailable, ["provider", "operation"], "PROVIDER_RESPONSE_INVALID"),
  // openid-client refuses such an answer itself (PROVIDER_RESPONSE_INVALID); Notion's own client reads it.
  ACCESS_TOKEN_MISSING: {
    status: Code.Unavailable,
    metadataKeys: ["provider"],
    produce: async (world, wire) => {
      const user = userFor("ACCESS_TOKEN_MISSING", wire);
      const state = await world.session(user, "notionish");
      world.peer.script("token", { body: { token_type: "bearer", bot_id: "bot-1", workspace_id: "ws-1" } }, 1);
      try {
        return await wire.unary(AuthorizationService.method.completeAuthorization, { provider: "notionish", state, code: `code-for-${user}` }, { authorization: world.admin });
      } finally {
        world.peer.reset();
      }
    },
  },
  PROVIDER_TIMEOUT: peerAnswers("token", { delayMs: 4_000, body: {} }, Code.Unavailable, ["provider", "operation"], "PROVIDER_TIMEOUT"),
  SCOPE_WIDENED: {
    status: Code.PermissionDenied,
    metadataKeys: ["provider", "error", "revocation", "widened_count", "widened_scopes"],
    produce: async (world, wire) => {
      const user = userFor("SCOPE_WIDENED", wire);
      const state = await world.session(user, "lookalike", ["read"]);
      world.peer.script("token", { body: { access_token: "at-widened", token_type: "Bearer", expires_in: 3600, refresh_token: "rt-widened-1", scope: "read write" } }, 1);
      world.peer.script("userinfo", { body: { sub: user } }, 1);
      try {
        return await wire.unary(AuthorizationService.method.completeAuthorization, { provider: "lookalike", state, code: `code-for-${user}` }, { authorization: world.admin });
      } finally {
        world.peer.reset();
      }
    },
  },
  ACCOUNT_UNKNOWN: peerAnswers("userinfo", { body: { name: "no id here" } }, Code.Unavailable, [], "ACCOUNT_UNKNOWN"),
  ACCESS_TOKEN_REJECTED: peerAnswers("userinfo", { status: 401, body: { error: "invalid_token" } }, Code.Unavailable, [...WIRE_STATUS, "error"], "ACCESS_TOKEN_REJECTED"),
  USERINFO_ENDPOINT_MISSING: {
    status: Code.FailedPrecondition,
    metadataKeys: [],
    produce: async (world, wire) => {
      const user = userFor("USERINFO_ENDPOINT_MISSING", wire);
      const { authorizationUrl } = await world.callers.connect.unary(AuthorizationService.method.startAuthorization, { provider: "openid-bare", userId: user }, { authorization: world.admin });
      const request = new URL(authorizationUrl);
      // A valid ID token whose `sub` is empty names no account: the broker must look the account
      // up at a userinfo endpoint, and the issuer's discovery names none.
      const idToken = await world.peer.idToken({ sub: "", aud: "broker-client", nonce: request.searchParams.get("nonce") ?? undefined });
      world.peer.script("token", { body: { access_token: "at-anonymous", token_type: "Bearer", expires_in: 3600, id_token: idToken } }, 1);
      try {
        return await wire.unary(
          AuthorizationService.method.completeAuthorization,
          { provider: "openid-bare", state: request.searchParams.get("state") ?? "", code: `code-for-${user}` },
          { authorization: world.admin },
        );
      } finally {
        world.peer.reset();
      }
    },
  },
  PROVIDER_UNREACHABLE: {
    status: Code.Unavailable,
    metadataKeys: ["provider", "operation"],
    produce: (world, wire) => complete(world, wire, "PROVIDER_UNREACHABLE", { provider: "gone" }),
  },
  INSECURE_ENDPOINT: {
    status: Code.FailedPrecondition,
    metadataKeys: ["provider", "operation"],
    produce: (world, wire) => complete(world, wire, "INSECURE_ENDPOINT", { provider: "insecure" }),
  },
  PROVIDER_NOT_CONFIGURED: {
    status: Code.FailedPrecondition,
    metadataKeys: ["provider"],
    produce: (world, wire) =>
      wire.unary(AuthorizationService.method.startAuthorization, { provider: "unregistered", userId: userFor("PROVIDER_NOT_CONFIGURED", wire) }, { authorization: world.admin }),
  },
  INVALID_ARGUMENT: {
    status: Code.InvalidArgument,
    metadataKeys: [],
    produce: (world, wire) => wire.unary(AuthorizationService.method.startAuthorization, { provider: "nowhere", userId: userFor("INVALID_ARGUMENT", wire) }, { authorization: world.admin }),
  },
  CANNOT_ACT_FOR_OTHER_USER: {
    status: Code.PermissionDenied,
    metadataKeys: [],
    produce: async (world, wire) =>
      wire.unary(AuthorizationService.method.startAuthorization, { provider: "lookalike", userId: "someone-else" }, { authorization: await world.broker.bearer(userFor("alice", wire), "user") }),
  },
  RATE_LIMITED: {
    status: Code.ResourceExhausted,
    metadataKeys: ["limit"],
    retry: true,
    produce: async (world, wire) => {
      const user = userFor("RATE_LIMITED", wire);
      for (let i = 0; i < START_AUTHORIZATION_BURST; i++) await world.session(user);
      return wire.unary(AuthorizationService.method.startAuthorization, { provider: "lookalike", userId: user }, { authorization: world.admin });
    },
  },
} satisfies WireCases<ReasonWorld>;

/** `limits.startAuthorizationPerUser.burst` of the world these rows run in. */
export const START_AUTHORIZATION_BURST = 4;

/** What the world of these rows adds to the providers at the peer. */
export function authorizationProvidersYaml(peerBaseUrl: string): string {
  return [
    "  notionish:",
    "    kind: notion",
    "    clientId: broker-client",
    "    clientSecret: ${PEER_SECRET}",
    `    endpoints: { api: '${peerBaseUrl}/v1' }`,
    "  openid-bare:",
    "    kind: oidc",
    "    clientId: broker-client",
    "    clientSecret: ${PEER_SECRET}",
    `    endpoints: { issuer: '${peerBaseUrl}' }`,
    ...FIXED_PROVIDERS_YAML,
  ].join("\n");
}

const FIXED_PROVIDERS_YAML = [
  "  insecure:",
  "    kind: oauth2",
  "    clientId: broker-client",
  "    clientSecret: ${PEER_SECRET}",
  "    endpoints: { authorization: 'http://insecure.example/authorize', token: 'http://insecure.example/token' }",
  "  unregistered:",
  "    kind: oauth2",
  "    endpoints: { authorization: 'https://unregistered.example/authorize', token: 'https://unregistered.example/token' }",
];
