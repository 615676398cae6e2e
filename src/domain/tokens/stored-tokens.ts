/**
 * The token sets as stored, in plaintext only in memory: reading decrypts both tokens in one
 * batch call and fills the cache; writing encrypts both, bound to the integration id.
 */
import { epochMs, type Cipher, type Clock, type TokenStore, type EncryptedTokenWrite } from "../ports.js";
import type { EncryptedTokenSet, TokenSet } from "../types.js";
import type { TokenCache } from "./token-cache.js";

/** A stored set, decrypted; the refresh token stays beside the tokens that are handed out. */
export interface CurrentTokens {
  readonly tokens: TokenSet;
  readonly version: number;
  readonly refreshToken: string | undefined;
}

export interface StoredTokens {
  decrypt(integrationId: string, stored: EncryptedTokenSet): Promise<CurrentTokens>;
  /** The stored set, decrypted and cached; undefined when there is none (deleted). */
  load(integrationId: string): Promise<CurrentTokens | undefined>;
  encrypt(integrationId: string, tokens: TokenSet): Promise<EncryptedTokenWrite>;
  /**
   * After a failed write the commit may still have landed, with only its acknowledgement lost:
   * the stored set is ours when it holds our access token (a provider never issues one twice).
   */
  versionIfOurs(integrationId: string, tokens: TokenSet): Promise<number | undefined>;
}

export function createStoredTokens(deps: { readonly store: TokenStore; readonly cipher: Cipher; readonly cache: TokenCache }): StoredTokens {
  const { store, cipher, cache } = deps;

  async function decrypt(integrationId: string, stored: EncryptedTokenSet): Promise<CurrentTokens> {
    const inputs = [{ ciphertext: stored.accessTokenCiphertext, context: integrationId }];
    if (stored.refreshTokenCiphertext) inputs.push({ ciphertext: stored.refreshTokenCiphertext, context: integrationId });
    const [accessToken, refreshToken] = await cipher.decryptBatch(inputs);
    return {
      tokens: {
        accessToken: accessToken ?? "",
        tokenType: stored.tokenType,
        expiresAt: stored.expiresAt,
        scopes: stored.scopes,
      } satisfies TokenSet,
      version: stored.version,
      refreshToken,
    };
  }

  return {
    decrypt,
    async load(integrationId) {
      const stored = await store.tokenSets.get(integrationId);
      if (!stored) return undefined;
      const loaded = await decrypt(integrationId, stored);
      cache.set(integrationId, { tokens: loaded.tokens, version: loaded.version });
      return loaded;
    },
    async encrypt(integrationId, tokens) {
      const plaintexts = [{ plaintext: tokens.accessToken, context: integrationId }];
      if (tokens.refreshToken) plaintexts.push({ plaintext: tokens.refreshToken, context: integrationId });
      const [accessCiphertext, refreshCiphertext] = await cipher.encryptBatch(plaintexts);
      return {
        accessTokenCiphertext: accessCiphertext ?? "",
        refreshTokenCiphertext: refreshCiphertext ?? null,
        tokenType: tokens.tokenType,
        expiresAt: tokens.expiresAt,
        scopes: tokens.scopes,
      };
    },
    async versionIfOurs(integrationId, tokens) {
      const latest = await store.tokenSets.get(integrationId);
      if (!latest) return undefined;
      const [accessToken] = await cipher.decryptBatch([{ ciphertext: latest.accessTokenCiphertext, context: integrationId }]);
      return accessToken === tokens.accessToken ? latest.version : undefined;
    },
  };
}

/** How long `tokens` stay valid from now, in ms (negative once expired). */
export function validForMs(tokens: TokenSet, clock: Clock): number {
  return tokens.expiresAt.getTime() - epochMs(clock);
}

/**
 * Cached token sets never hold the refresh token, so the one handed out is the cached object
 * itself: callers (the GetAccessToken handler) can recognise a token set they answered with
 * before and reuse that answer.
 */
export function withoutRefreshToken(tokens: TokenSet): TokenSet {
  return tokens.refreshToken === undefined ? tokens : { ...tokens, refreshToken: undefined };
}
