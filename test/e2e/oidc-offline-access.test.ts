/**
 * Refreshable by default, against independent OpenID providers configured by discovery alone
 * (kind `oidc`, only `endpoints.issuer`): a flow that names its own scopes still asks for
 * `offline_access` with `prompt=consent` when the provider advertises it, so the integration
 * refreshes; a provider that does not advertise it is connected as it is, and its integration
 * answers NO_REFRESH_TOKEN once its token cannot last as long as asked. The peers play a plain
 * OpenID provider: a refresh token only for a consented `offline_access` (OIDC Core §11).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { createLogger } from "../../src/observability/logger.js";
import type { BrokerProcess } from "../support/broker-process.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import { freePort } from "../support/free-port.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { startOidcPeer, type OidcPeer } from "../support/peers/oidc-peer.js";
import { parseExposition, series } from "../support/prometheus-text.js";
import { connectAccount, startAuthorization } from "../support/browser-flow.js";

const PEER_TOKEN_TTL_SECONDS = 600;

describe("oidc providers configured by discovery alone", () => {
  let broker: BrokerProcess;
  let data: BrokerDataDir;
  let refreshing: OidcPeer;
  let plain: OidcPeer;
  let userToken: string;
  let adminToken: string;

  beforeAll(async () => {
    data = await createBrokerDataDir("oauth-broker-e2e-offline", createLogger({ level: "silent" }));
    const port = await freePort();
    const publicUrl = `http://127.0.0.1:${port}`;
    const client = (id: string) => ({
      client_id: "broker-client",
      client_secret: "peer-secret",
      redirect_uris: [`${publicUrl}/oauth/callback/${id}`],
      token_endpoint_auth_method: "client_secret_basic" as const,
    });
    const common = { flavor: "microsoft" as const, impliedConsentPrompt: false, accessTokenTtlSeconds: PEER_TOKEN_TTL_SECONDS, scopes: ["files.read"] };
    refreshing = await startOidcPeer({ ...common, clients: [client("idp")] });
    plain = await startOidcPeer({ ...common, clients: [client("plain")], offlineAccess: false });
    const provider = (id: string, issuer: string) => [
      `  ${id}:`,
      "    kind: oidc",
      "    clientId: broker-client",
      "    clientSecret: ${PEER_SECRET}",
      "    allowedScopes: [openid, offline_access, files.read]",
      `    endpoints: { issuer: '${issuer}' }`,
    ];
    await data.writeConfig(["providers:", ...provider("idp", refreshing.issuer), ...provider("plain", plain.issuer), ""]);
    broker = await data.startBroker({ BROKER_HTTP_ADDR: `127.0.0.1:${port}`, BROKER_PUBLIC_URL: publicUrl, PEER_SECRET: "peer-secret" }, 90_000);
    userToken = await data.token("alice", "user");
    adminToken = data.adminToken;
  }, 120_000);

  afterAll(async () => {
    if (broker !== undefined) expect(await broker.stop()).toBe(0);
    await refreshing?.close();
    await plain?.close();
    await data?.remove();
  });

  const asAdmin = () => ({ metadata: { authorization: `Bearer ${adminToken}` } });

  it("asks an advertising provider for offline_access with prompt=consent besides the caller's scopes, and the grant refreshes", async () => {
    const { authorizationUrl: url } = await startAuthorization(broker.httpUrl, { authorization: `Bearer ${userToken}` }, { provider: "idp", scopes: ["files.read"] });
    expect(url.searchParams.get("scope")).toBe("files.read openid offline_access");
    expect(url.searchParams.get("prompt")).toBe("consent");

    const id = await connectAccount(broker.httpUrl, userToken, "idp", "alice-idp", ["files.read"]);
    const client = grpcClient(broker.grpcAddress);
    try {
      const { response: { integration: got } } = await unary(client, IntegrationService.method.getIntegration, { id }, asAdmin());
      expect(got?.hasRefreshToken).toBe(true);
      expect([...(got?.grantedScopes ?? [])].sort()).toEqual(["files.read", "offline_access", "openid"]);
      const before = refreshing.tokenRequests();
      const { response: { integration: refreshed } } = await unary(client, IntegrationService.method.refreshIntegration, { id }, asAdmin());
      expect(refreshed?.hasRefreshToken).toBe(true);
      expect(refreshing.tokenRequests()).toBe(before + 1);
    } finally {
      client.close();
    }
  });

  it("connects a provider that does not advertise offline_access as it is; its token answers NO_REFRESH_TOKEN past its life", async () => {
    const id = await connectAccount(broker.httpUrl, userToken, "plain", "alice-plain", ["files.read"]);
    const client = grpcClient(broker.grpcAddress);
    try {
      const { response: { integration: got } } = await unary(client, IntegrationService.method.getIntegration, { id }, asAdmin());
      expect(got?.hasRefreshToken).toBe(false);
      expect([...(got?.grantedScopes ?? [])].sort()).toEqual(["files.read", "openid"]);

      // Within the token's life it is handed out as usual.
      const ok = await unary(client, TokenService.method.getAccessToken, { integrationId: id, minValidFor: { seconds: 60n } }, asAdmin());
      expect(ok.response.accessToken).not.toBe("");

      const before = plain.tokenRequests();
      const failure = (await unary(client, TokenService.method.getAccessToken, { integrationId: id, minValidFor: { seconds: BigInt(PEER_TOKEN_TTL_SECONDS + 60) } }, asAdmin()).catch(
        (error: unknown) => error,
      )) as GrpcFailure;
      expect(failure.code).toBe(9); // FAILED_PRECONDITION
      expect(failure.errorInfo?.reason).toBe("NO_REFRESH_TOKEN");
      expect(failure.details).toMatch(/^the plain provider granted no refresh token, so the broker cannot renew the access token \(it expires at .+\); the user must connect their account again$/);
      expect(failure.details).not.toContain("refused");
      const forced = (await unary(client, IntegrationService.method.refreshIntegration, { id }, asAdmin()).catch((error: unknown) => error)) as GrpcFailure;
      expect(forced.errorInfo?.reason).toBe("NO_REFRESH_TOKEN");
      expect(plain.tokenRequests()).toBe(before);

      // The integration stays usable for what its token can still do, and stays active.
      const { response: { integration: after } } = await unary(client, IntegrationService.method.getIntegration, { id }, asAdmin());
      expect(after?.statusReason).toBe("");
      await unary(client, TokenService.method.getAccessToken, { integrationId: id, minValidFor: { seconds: 60n } }, asAdmin());

      const { response: status } = await unary(client, StatusService.method.getStatus, {}, asAdmin());
      const byProvider = new Map(status.providers.map((p) => [p.provider, p.integrationsWithoutRefreshToken]));
      expect(byProvider.get("plain")).toBe(1n);
      expect(byProvider.get("idp")).toBe(0n);
    } finally {
      client.close();
    }
    const metrics = series(parseExposition(await (await fetch(`${broker.httpUrl}/metrics`)).text()), "oauth_broker_integrations_without_refresh_token");
    expect(metrics).toMatchObject({ "provider=plain": 1, "provider=idp": 0 });
  });
});
