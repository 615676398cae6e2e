/**
 * Connects an account at an oidc-provider peer and stores the grant the way the broker's
 * callback does (encrypted, bound to the integration id), without going through a browser
 * flow of the broker: for tests about what happens to a grant after it was connected.
 */
import { randomUUID } from "node:crypto";
import type postgres from "postgres";
import { randomNonce, randomPKCECodeVerifier, randomState } from "openid-client";
import type { Cipher, ProviderClient } from "../../src/domain/ports.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import type { OidcPeer } from "./peers/oidc-peer.js";

export interface PeerConnection {
  readonly integrationId: string;
  /** The refresh token of the code exchange: a rotating peer revokes the grant when it is replayed after use. */
  readonly refreshToken: string;
}

export async function connectAtPeer(options: {
  peer: OidcPeer;
  client: ProviderClient;
  cipher: Cipher;
  sql: postgres.Sql;
  username: string;
  /** The broker's provider id the integration belongs to. */
  provider: string;
  redirectUri: string;
  scopes?: string[];
}): Promise<PeerConnection> {
  const { client, cipher } = options;
  const state = randomState();
  const codeVerifier = randomPKCECodeVerifier();
  const nonce = randomNonce();
  const scopes = options.scopes ?? ["User.Read"];
  const url = await client.authorizationUrl({ state, scopes, redirectUri: options.redirectUri, codeVerifier, nonce });
  const callbackUrl = await options.peer.driveConsent(url, { username: options.username });
  const grant = await client.exchangeCode({ callbackUrl, expectedState: state, redirectUri: options.redirectUri, codeVerifier, nonce, requestedScopes: scopes });
  const refreshToken = grant.tokens.refreshToken;
  if (refreshToken === undefined) throw new Error("the peer issued no refresh token");
  const id = randomUUID();
  const [access, refresh] = await cipher.encryptBatch([
    { plaintext: grant.tokens.accessToken, context: id },
    { plaintext: refreshToken, context: id },
  ]);
  if (access === undefined || refresh === undefined) throw new Error("encryption returned nothing");
  await createIntegrationRepository(options.sql).upsertWithTokens({
    id,
    userId: options.username,
    provider: options.provider,
    externalAccount: grant.account ?? { id: options.username, name: options.username, attributes: {} },
    grantedScopes: grant.tokens.scopes,
    tokens: {
      accessTokenCiphertext: access,
      refreshTokenCiphertext: refresh,
      tokenType: "Bearer",
      expiresAt: grant.tokens.expiresAt,
      scopes: grant.tokens.scopes,
    },
  });
  return { integrationId: id, refreshToken };
}

// Kept for the files that import it from here; its home is wait-until.ts.
export { waitUntil } from "./wait-until.js";
