/**
 * The world most error-reason wire tests run in: a broker in this process with real
 * PostgreSQL and its local keyring, whose `oauth2` providers all live at one scripted peer, and
 * the steps the tests take before the refused call (an authorization session, a connected
 * account, an expired token), each through the broker's own RPCs.
 */
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { freePort } from "./free-port.js";
import { SCRIPTED_CLIENT_SECRET, startScriptedOauth2Peer, type ScriptedOauth2Peer } from "./peers/scripted-oauth2-peer.js";
import { startVaultEmulator, type VaultEmulator } from "./vault-transit-emulator.js";
import { startWireBroker, type WireBroker } from "./wire-broker.js";
import type { Wire, WireCaller } from "./wire-call.js";

export interface ReasonWorld {
  readonly db: TestDatabase;
  readonly peer: ScriptedOauth2Peer;
  readonly broker: WireBroker;
  readonly callers: Record<Wire, WireCaller>;
  /** An admin service: may do everything, for every user. */
  readonly admin: string;
  /** A fresh authorization session of `user` at `provider`; its state. */
  session(user: string, provider?: string, scopes?: string[]): Promise<string>;
  /** Connects `account` for `user` through StartAuthorization and CompleteAuthorization; the integration id. */
  connect(user: string, options?: { account?: string; provider?: string; scopes?: string[] }): Promise<string>;
  /** Makes the stored access token of the integration expired, so the next GetAccessToken refreshes. */
  expire(integrationId: string): Promise<void>;
  close(): Promise<void>;
}

/** Providers at the scripted peer; a row that pauses or trips one has one per wire, as its state outlives the call. */
export const PEER_PROVIDERS = ["lookalike", "lookalike-b", ...["paused", "tripped"].flatMap((id) => [`${id}-grpc`, `${id}-connect`])];

export interface ReasonWorldOptions {
  /** More providers at the scripted peer, with their own timeout. */
  readonly extraPeerProviders?: readonly { readonly id: string; readonly timeoutMs: number }[];
  /** More settings under `tokens:`. */
  readonly tokensYaml?: string;
  /** More providers, under `providers:`; given the scripted peer's base URL. */
  readonly providersYaml?: (peerBaseUrl: string) => string;
  /** More limits, under `limits:` (whose per-principal limits are generous). */
  readonly limitsYaml?: string;
  /** More top-level sections. */
  readonly yaml?: string;
  readonly env?: Readonly<Record<string, string>>;
  /** The database URL the broker is given (a proxy's, say), from the test database's. */
  readonly brokerDatabaseUrl?: (url: string) => string;
}

export async function startReasonWorld(options: ReasonWorldOptions = {}): Promise<ReasonWorld> {
  const db = await createTestDatabase();
  const peer = await startScriptedOauth2Peer();
  let broker: WireBroker | undefined;
  try {
    const unreachable = `http://127.0.0.1:${await freePort()}`;
    const yaml = [
      "providers:",
      ...PEER_PROVIDERS.map((id) => peer.providerYaml(id)),
      ...(options.extraPeerProviders ?? []).map(({ id, timeoutMs }) => peer.providerYaml(id, { timeoutMs })),
      "  gone:",
      "    kind: oauth2",
      "    clientId: broker-client",
      "    clientSecret: ${PEER_SECRET}",
      "    timeoutMs: 1500",
      `    endpoints: { authorization: '${unreachable}/authorize', token: '${unreachable}/token' }`,
      options.providersYaml?.(peer.baseUrl) ?? "",
      "tokens:",
      "  proactiveRefreshIntervalSeconds: 3600",
      options.tokensYaml ?? "",
      // The refusals come from the row's own cause, never from the calls set-ups make.
      "limits:",
      "  perPrincipal:",
      ...["token", "read", "write", "admin"].map((kind) => `    ${kind}: { ratePerSecond: 100000, burst: 100000 }`),
      options.limitsYaml ?? "",
      options.yaml ?? "",
    ].join("\n");
    broker = await startWireBroker({ yaml, databaseUrl: options.brokerDatabaseUrl?.(db.url) ?? db.url, env: { PEER_SECRET: SCRIPTED_CLIENT_SECRET, ...options.env } });
    const started = broker;
    const admin = await started.bearer("ops", "service", ["admin"]);
    const setup = started.callers.connect;
    const session = async (user: string, provider = "lookalike", scopes: string[] = []) => {
      const { authorizationUrl } = await setup.unary(AuthorizationService.method.startAuthorization, { provider, scopes, userId: user }, { authorization: admin });
      return new URL(authorizationUrl).searchParams.get("state") ?? "";
    };
    return {
      db,
      peer,
      broker: started,
      callers: started.callers,
      admin,
      session,
      async connect(user, connectOptions = {}) {
        const provider = connectOptions.provider ?? "lookalike";
        const state = await session(user, provider, connectOptions.scopes);
        const { integration } = await setup.unary(
          AuthorizationService.method.completeAuthorization,
          { provider, state, code: `code-for-${connectOptions.account ?? user}` },
          { authorization: admin },
        );
        if (integration === undefined) throw new Error("CompleteAuthorization returned no integration");
        return integration.id;
      },
      async expire(integrationId) {
        await db.sql`update token_sets set expires_at = now() - interval '1 minute' where integration_id = ${integrationId}`;
      },
      async close() {
        await started.close();
        await peer.close();
        await db.drop();
      },
    };
  } catch (error) {
    await broker?.close();
    await peer.close();
    await db.drop();
    throw error;
  }
}

/** A reason world whose broker encrypts through the Vault transit emulator; closing it closes both. */
export async function startReasonWorldAtVault(options: ReasonWorldOptions = {}): Promise<ReasonWorld & { readonly vault: VaultEmulator }> {
  const vault = await startVaultEmulator();
  try {
    const world = await startReasonWorld({ ...options, env: { VAULT_ADDR: vault.url, VAULT_TOKEN: vault.rootToken, ...options.env } });
    return {
      ...world,
      vault,
      async close() {
        await world.close();
        await vault.close();
      },
    };
  } catch (error) {
    await vault.close();
    throw error;
  }
}
