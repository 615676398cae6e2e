/**
 * Reasons of OpenID Connect and Google's templates, against an oidc-provider peer playing
 * Google: the redirect's issuer (RFC 9207), the ID token's nonce, and YouTube's channel lookup
 * (at the scripted peer), each reached through CompleteAuthorization with a real code.
 */
import { Code } from "@connectrpc/connect";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import type { OidcPeer } from "../support/peers/oidc-peer.js";
import type { ScriptedAnswer, ScriptedOauth2Peer } from "../support/peers/scripted-oauth2-peer.js";
import type { Wire, WireCaller } from "../support/wire-call.js";
import { userFor, type WireCases } from "../support/wire-cases.js";

export interface OpenIdWorld {
  readonly callers: Record<Wire, WireCaller>;
  readonly admin: string;
  readonly google: OidcPeer;
  /** Plays YouTube's Data API for the `youtube` provider. */
  readonly youtubeApi: ScriptedOauth2Peer;
  /** StartAuthorization for `user`, then the user's consent at the peer: the redirect back. */
  consent(user: string, provider: string): Promise<URL>;
  /** StartAuthorization for `user`: the session's state, nobody consenting. */
  session(user: string, provider: string): Promise<string>;
}

export const OPENID_PROVIDERS = ["google", "google-without-pkce", "youtube"] as const;

function complete(world: OpenIdWorld, wire: WireCaller, provider: string, redirect: URL, overrides: { state?: string; iss?: string } = {}) {
  const param = (name: string) => redirect.searchParams.get(name) ?? "";
  return wire.unary(
    AuthorizationService.method.completeAuthorization,
    { provider, state: overrides.state ?? param("state"), code: param("code"), iss: overrides.iss ?? param("iss") },
    { authorization: world.admin },
  );
}

async function youtubeLookup(world: OpenIdWorld, wire: WireCaller, tag: string, answer: ScriptedAnswer) {
  const redirect = await world.consent(userFor(tag, wire), "youtube");
  world.youtubeApi.script("userinfo", answer, 1);
  try {
    return await complete(world, wire, "youtube", redirect);
  } finally {
    world.youtubeApi.reset();
  }
}

export const OPENID_CASES = {
  ISSUER_MISMATCH: {
    status: Code.FailedPrecondition,
    metadataKeys: ["provider"],
    produce: async (world, wire) => complete(world, wire, "google", await world.consent(userFor("ISSUER_MISMATCH", wire), "google"), { iss: "https://attacker.example" }),
  },
  ISSUER_MISSING: {
    status: Code.FailedPrecondition,
    metadataKeys: ["provider"],
    produce: async (world, wire) => complete(world, wire, "google", await world.consent(userFor("ISSUER_MISSING", wire), "google"), { iss: "" }),
  },
  NONCE_MISMATCH: {
    status: Code.FailedPrecondition,
    metadataKeys: ["provider", "operation"],
    produce: async (world, wire) => {
      // A code (and ID token) of one authorization request injected into another session.
      const user = userFor("NONCE_MISMATCH", wire);
      const redirect = await world.consent(user, "google-without-pkce");
      const other = await world.session(user, "google-without-pkce");
      return complete(world, wire, "google-without-pkce", redirect, { state: other });
    },
  },
  YOUTUBE_CHANNEL_MISSING: {
    status: Code.Unavailable,
    metadataKeys: ["provider"],
    produce: (world, wire) => youtubeLookup(world, wire, "YOUTUBE_CHANNEL_MISSING", { body: { kind: "youtube#channelListResponse", items: [] } }),
  },
  PROVIDER_QUOTA_EXCEEDED: {
    status: Code.ResourceExhausted,
    metadataKeys: ["provider", "operation", "http_status", "api_reason", "retry_after_seconds"],
    retry: true,
    produce: (world, wire) =>
      youtubeLookup(world, wire, "PROVIDER_QUOTA_EXCEEDED", {
        status: 403,
        body: { error: { code: 403, message: "quota", errors: [{ message: "quota", domain: "youtube.quota", reason: "quotaExceeded" }] } },
      }),
  },
} satisfies WireCases<OpenIdWorld>;
