/**
 * What the authorization flow needs from storage and from the provider registry, as structural
 * subsets: the postgres.js repositories and `ProviderRegistry` satisfy them as they are, and the
 * unit tests use in-memory fakes.
 */
import type { EncryptedTokenWrite, ProviderClient } from "./ports.js";
import type { ProviderProfile } from "./provider-profile.js";
import type { AuthorizationSession, ExternalAccount, Integration } from "./types.js";

/** One-time authorization sessions, found by the hash of their state (the state is never stored). */
export interface AuthorizationSessionStore {
  create(session: AuthorizationSession & { readonly stateHash: string }): Promise<unknown>;
  /**
   * Deletes and returns the session with this state hash, expired or not: a state is usable
   * once, and a failed attempt uses it up too (oauth-client-security.md §1).
   */
  consume(stateHash: string): Promise<AuthorizationSession | undefined>;
}

export interface IntegrationUpsert {
  /** The id of the integration, chosen before encryption because ciphertexts are bound to it. */
  readonly id: string;
  readonly userId: string;
  readonly provider: string;
  readonly externalAccount: ExternalAccount;
  readonly grantedScopes: readonly string[];
  readonly tokens: EncryptedTokenWrite;
}

export interface AuthorizationIntegrationStore {
  /** The live (not deleted) integration of this user × provider × external account. */
  findLive(userId: string, provider: string, externalAccountId: string): Promise<Integration | undefined>;
  /**
   * Every live integration of this external account with any of these providers, whichever
   * user holds it: a provider's grant belongs to the account and the OAuth client.
   */
  findLiveForAccount(providers: readonly string[], externalAccountId: string): Promise<readonly Integration[]>;
  /** Marks an active integration for re-authorization (its grant ended at the provider). */
  markNeedsReauth(id: string, reason: string): Promise<void>;
  /** The user's integrations with one provider. */
  findForUser(userId: string, provider: string): Promise<readonly Integration[]>;
  /**
   * Creates the integration with its token set, or — when the user already has a live one for
   * the same external account — updates it in place, keeping its id. One transaction.
   */
  upsertWithTokens(input: IntegrationUpsert): Promise<{ readonly integration: Integration; readonly created: boolean }>;
}

/** The configured providers: their capability profiles, their clients and their redirect URIs. */
export interface ProviderDirectory {
  list(): readonly ProviderProfile[];
  /** `undefined` when the provider has no usable client (no credentials, sandbox not running). */
  client(id: string): ProviderClient | undefined;
  /** `<publicUrl>/oauth/callback/<id>`: the exact value registered at the provider. */
  redirectUri(id: string): string;
}
