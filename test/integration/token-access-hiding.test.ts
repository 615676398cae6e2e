/**
 * GetAccessToken by integration id on the real broker (in-process, real PostgreSQL, a
 * Microsoft-like peer): an integration the caller may not use answers exactly like an id that
 * does not exist — same status, message and details, whatever its state — and leaves no trace a
 * caller could observe: no provider refresh, no last-use write, no token events, no lease taken.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startInProcessBroker, type InProcessBroker } from "../support/in-process-broker.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { type OidcPeer } from "../support/peers/oidc-peer.js";
import { captureLogger } from "../support/log-capture.js";
import { freePort } from "../support/free-port.js";
import { connectAccount } from "../support/browser-flow.js";
import { microsoftPeerProviderYaml, startMicrosoftPeer } from "../support/peers/microsoft-peer.js";

const SECRET = "ms~secret.value_4";

describe("GetAccessToken for an integration the caller may not use", () => {
  let db: TestDatabase;
  let peer: OidcPeer;
  let running: InProcessBroker;
  const tokens = { mail: "", calendar: "", lonely: "" };
  /** Active, token expired: any access to it would refresh at the provider. */
  let expiring: string;
  /** The provider refused its grant. */
  let refused: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    const { logger } = captureLogger();
    const port = await freePort();
    // The broker's own callback: accounts are connected through the flow a user's browser takes.
    ({ peer } = await startMicrosoftPeer({ secret: SECRET, redirectUri: `http://127.0.0.1:${port}/oauth/callback/microsoft`, logger }));
    const yaml = [
      "sandbox:",
      "  enabled: true",
      "providers:",
      ...microsoftPeerProviderYaml("microsoft", peer),
      "policies:",
      "  - { service: mail, providers: [microsoft], scopes: ['*'], actForUsers: true }",
      "  - { service: calendar, providers: [sandbox], scopes: ['*'], actForUsers: true }",
      "  - { service: lonely, providers: [microsoft], scopes: ['*'], actForUsers: false }",
    ].join("\n");
    running = await startInProcessBroker({ yaml, databaseUrl: db.url, env: { MS_SECRET: SECRET }, logger, httpPort: port, name: "oauth-broker-hiding" });
    for (const service of ["mail", "calendar", "lonely"] as const) tokens[service] = await running.token(service, "service");
    const connect = async (username: string) =>
      connectAccount(running.httpUrl, await running.token(username, "user"), "microsoft", username);
    expiring = await connect("erin");
    await db.sql`update token_sets set expires_at = now() - interval '1 second' where integration_id = ${expiring}`;
    refused = await connect("frank");
    await db.sql`update integrations set status = 'needs_reauth', status_reason = 'invalid_grant' where id = ${refused}`;
  }, 60_000);

  afterAll(async () => {
    await running?.stop();
    await peer?.close();
    await db?.drop();
  });

  async function getToken(who: keyof typeof tokens, integrationId: string) {
    const grpc = grpcClient(running.grpcAddress);
    try {
      return await unary(grpc, TokenService.method.getAccessToken, { integrationId }, { metadata: { authorization: `Bearer ${tokens[who]}` } });
    } finally {
      grpc.close();
    }
  }

  /** What a caller sees of a failure, with the id it asked for made generic. */
  async function answer(who: keyof typeof tokens, integrationId: string) {
    const failure = (await getToken(who, integrationId).then(
      () => undefined,
      (e: unknown) => e,
    )) as GrpcFailure | undefined;
    if (!failure) throw new Error(`${who} got a token for ${integrationId}`);
    return {
      code: failure.code,
      message: failure.details.replaceAll(integrationId, "<id>"),
      errorInfo: failure.errorInfo,
      retryDelayMs: failure.retryDelayMs,
      fieldViolations: failure.fieldViolations,
    };
  }

  async function traces(ids: readonly string[]) {
    return db.sql`
      select i.id, i.status, i.last_used_at, i.last_refreshed_at, t.version::int as version, t.lease_owner,
             (select count(*)::int from audit_events a where a.integration_id = i.id::text and a.action like 'token.%') as token_events
      from integrations i join token_sets t on t.integration_id = i.id where i.id = any(${ids as string[]}) order by i.id`;
  }

  it("answers a service outside the integration's provider exactly as for a missing id, with no side effect", async () => {
    const before = await traces([expiring, refused]);
    const requests = peer.tokenRequests();
    const missing = await answer("calendar", randomUUID());
    expect(missing).toMatchObject({ code: Code.NotFound, message: "integration <id> not found", errorInfo: { reason: "INTEGRATION_NOT_FOUND" } });
    expect(await answer("calendar", expiring)).toEqual(missing);
    expect(await answer("calendar", refused)).toEqual(missing);
    // Twice: a second ask must not find anything cached by the first either.
    expect(await answer("calendar", expiring)).toEqual(missing);
    expect(peer.tokenRequests()).toBe(requests);
    expect(await traces([expiring, refused])).toEqual(before);
  });

  it("refuses a service that may not act for users the same way for every id, before looking", async () => {
    const requests = peer.tokenRequests();
    const missing = await answer("lonely", randomUUID());
    expect(missing).toMatchObject({ code: Code.PermissionDenied, errorInfo: { reason: "CANNOT_ACT_FOR_USERS" } });
    expect(await answer("lonely", expiring)).toEqual(missing);
    expect(await answer("lonely", refused)).toEqual(missing);
    expect(peer.tokenRequests()).toBe(requests);
  });

  it("still serves and explains to a caller that may use the integration", async () => {
    expect(await answer("mail", refused)).toMatchObject({ code: Code.FailedPrecondition, errorInfo: { reason: "INTEGRATION_NEEDS_REAUTH" } });
    const requests = peer.tokenRequests();
    const { response } = await getToken("mail", expiring);
    expect(response.accessToken).not.toBe("");
    expect(peer.tokenRequests() - requests).toBe(1);
  });
});
