/**
 * Every reason of the OpenID Connect and Google templates, on both listeners: the status,
 * `ErrorInfo` reason, domain and metadata keys a caller of CompleteAuthorization receives.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { freePort } from "../support/free-port.js";
import { startOidcPeer, type OidcPeer } from "../support/peers/oidc-peer.js";
import { startScriptedOauth2Peer, type ScriptedOauth2Peer } from "../support/peers/scripted-oauth2-peer.js";
import { startWireBroker, type WireBroker } from "../support/wire-broker.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { OPENID_CASES, OPENID_PROVIDERS, type OpenIdWorld } from "./error-reasons-wire-openid.cases.js";

const SECRET = "google-peer-secret";

let db: TestDatabase | undefined;
let google: OidcPeer | undefined;
let youtubeApi: ScriptedOauth2Peer | undefined;
let broker: WireBroker | undefined;
let world: OpenIdWorld;

beforeAll(async () => {
  db = await createTestDatabase();
  const port = await freePort();
  google = await startOidcPeer({
    flavor: "google",
    pkceRequired: false,
    scopes: ["https://www.googleapis.com/auth/youtube.readonly"],
    clients: [
      {
        client_id: "broker-client",
        client_secret: SECRET,
        redirect_uris: OPENID_PROVIDERS.map((id) => `http://127.0.0.1:${port}/oauth/callback/${id}`),
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
  });
  youtubeApi = await startScriptedOauth2Peer();
  const provider = (id: string, kind: string, extra: string[] = []) => [
    `  ${id}:`,
    `    kind: ${kind}`,
    "    clientId: broker-client",
    "    clientSecret: ${GOOGLE_SECRET}",
    "    timeoutMs: 3000",
    ...extra,
  ];
  const yaml = [
    "providers:",
    ...provider("google", "google", [`    endpoints: { issuer: '${google.issuer}' }`]),
    ...provider("google-without-pkce", "google", ["    pkce: false", `    endpoints: { issuer: '${google.issuer}' }`]),
    ...provider("youtube", "youtube", [`    endpoints: { issuer: '${google.issuer}', api: '${youtubeApi.baseUrl}' }`]),
    "tokens:",
    "  proactiveRefreshIntervalSeconds: 3600",
    "",
  ].join("\n");
  broker = await startWireBroker({ yaml, databaseUrl: db.url, httpPort: port, env: { GOOGLE_SECRET: SECRET } });
  const admin = await broker.bearer("ops", "service", ["admin"]);
  const started = broker;
  const peer = google;
  const session = async (user: string, providerId: string) => {
    const { authorizationUrl } = await started.callers.connect.unary(AuthorizationService.method.startAuthorization, { provider: providerId, userId: user }, { authorization: admin });
    return authorizationUrl;
  };
  world = {
    callers: started.callers,
    admin,
    google: peer,
    youtubeApi,
    consent: async (user, providerId) => peer.driveConsent(await session(user, providerId), { username: user }),
    session: async (user, providerId) => new URL(await session(user, providerId)).searchParams.get("state") ?? "",
  };
}, 60_000);

afterAll(async () => {
  await broker?.close();
  await youtubeApi?.close();
  await google?.close();
  await db?.drop();
});

describe("OpenID Connect and Google refusals reach the caller", () => {
  itRefusesOnTheWire(OPENID_CASES, () => world);
});
