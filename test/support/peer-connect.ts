/**
 * Connects an account at an oidc-provider peer through the broker's own authorization flow,
 * without a broker listener: StartAuthorization's session, the peer's consent page, then
 * CompleteAuthorization, which exchanges the code, stores the grant as the callback does
 * (encrypted, bound to the integration id) and writes its audit event. For tests about what
 * happens to a grant after it was connected.
 */
import type postgres from "postgres";
import { createAuthorizationService } from "../../src/domain/authorization-service.js";
import type { ProviderKind } from "../../src/config/types.js";
import type { Cipher, ProviderClient } from "../../src/domain/ports.js";
import type { RequestContext } from "../../src/domain/types.js";
import { createLogger } from "../../src/observability/logger.js";
import { providerProfile } from "../../src/providers/provider-profile.js";
import { createPostgresAuditLog } from "../../src/storage/audit-log.js";
import { createIntegrationRepository } from "../../src/storage/integration-repository.js";
import { createSessionRepository } from "../../src/storage/session-repository.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import type { OidcPeer } from "./peers/oidc-peer.js";
import { testProviderConfig } from "./peers/provider-config.js";

export interface PeerConnection {
  readonly integrationId: string;
  /** The refresh token of the code exchange, as stored: a rotating peer revokes the grant when it is replayed after use. */
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
  /** The provider's kind in the broker's configuration; the peers here all play Microsoft. */
  kind?: ProviderKind;
}): Promise<PeerConnection> {
  const { peer, client, cipher, sql, username, provider, redirectUri } = options;
  // The flow checks that the provider is configured with credentials; the client given here is
  // the one that holds (and uses) the real secret.
  const config = testProviderConfig({
    id: provider,
    kind: options.kind ?? "microsoft",
    defaultScopes: options.scopes ?? ["User.Read"],
    clientSecret: "held-by-the-given-client",
  });
  const audit = createPostgresAuditLog({ sql, logger: createLogger({ level: "silent" }) });
  const publicUrl = new URL(new URL(redirectUri).origin);
  const flow = createAuthorizationService({
    providers: { list: () => [providerProfile(config)], client: (id) => (id === provider ? client : undefined), redirectUri: () => redirectUri },
    policy: () => createRpcPolicy({ policies: [], providers: [config] }),
    sessions: createSessionRepository(sql),
    integrations: createIntegrationRepository(sql),
    cipher,
    audit,
    settings: () => ({ returnToAllowList: [publicUrl.href], sessionTtlSeconds: 600 }),
    publicUrl,
  });
  // The user connects their own account, as from the broker's web page.
  const ctx: RequestContext = { principal: { kind: "user", subject: username, issuer: "local" }, requestId: `connect-${username}`, peer: "127.0.0.1:1" };
  try {
    const started = await flow.start(ctx, { provider, scopes: [], returnTo: "", userId: "" });
    const callback = new URL(await peer.driveConsent(started.authorizationUrl, { username }));
    const query = (name: string) => callback.searchParams.get(name) ?? "";
    const { integration } = await flow.complete(ctx, {
      provider,
      state: query("state"),
      code: query("code"),
      iss: query("iss"),
      error: query("error"),
      errorDescription: query("error_description"),
      // A user's own flow is bound to their browser: the app forwards the binding cookie.
      binding: started.browserBinding?.value,
    });
    const [row] = await sql<{ refresh_token_ciphertext: string | null }[]>`
      select refresh_token_ciphertext from token_sets where integration_id = ${integration.id}`;
    if (!row?.refresh_token_ciphertext) throw new Error("the peer issued no refresh token");
    return { integrationId: integration.id, refreshToken: await cipher.decrypt({ ciphertext: row.refresh_token_ciphertext, context: integration.id }) };
  } finally {
    await audit.close();
  }
}

// Kept for the files that import it from here; its home is wait-until.ts.
export { waitUntil } from "./wait-until.js";
