/**
 * IntegrationService on the real broker (in-process, real PostgreSQL, sandbox provider), over
 * both listeners: users see, read and refresh only their own integrations; another user's id is
 * indistinguishable from a missing one; admins see everyone's; pages are stable and bound to
 * their filters; nothing returned carries a token.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { IntegrationStatus } from "../../src/gen/oauthbroker/v1/integration_pb.js";
import { createLogger } from "../../src/observability/logger.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { startInProcessBroker, type InProcessBroker } from "../support/in-process-broker.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { connectSandboxAccount } from "../support/browser-flow.js";

let db: TestDatabase;
let broker: InProcessBroker;
let httpUrl: string;
const tokens = { alice: "", bob: "", admin: "" };
let aliceIntegration: string;

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await startInProcessBroker({
    yaml: "sandbox:\n  enabled: true\n",
    databaseUrl: db.url,
    logger: createLogger({ level: "silent" }),
    name: "oauth-broker-integrations",
  });
  httpUrl = broker.httpUrl;
  tokens.alice = await broker.token("alice", "user");
  tokens.bob = await broker.token("bob", "user");
  tokens.admin = await broker.token("ops", "service", ["admin"]);
  aliceIntegration = await connectSandboxAccount(httpUrl, tokens.alice, "alice-at-sandbox");
  for (let i = 0; i < 3; i++) await connectSandboxAccount(httpUrl, tokens.bob, `bob-${i}`);
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  await db?.drop();
});

describe("over gRPC", () => {
  const call = <T>(method: keyof typeof IntegrationService.method, who: keyof typeof tokens, request: object) => {
    const client = grpcClient(broker.grpcAddress);
    return unary(client, IntegrationService.method[method] as never, request as never, {
      metadata: { authorization: `Bearer ${tokens[who]}` },
    }).finally(() => client.close()) as unknown as Promise<{ response: T }>;
  };

  it("lets a user list and read only their own integrations", async () => {
    const mine = await call<{ integrations: Array<{ id: string; userId: string }> }>("listIntegrations", "alice", {});
    expect(mine.response.integrations.map((i) => i.id)).toEqual([aliceIntegration]);
    const got = await call<{ integration: { userId: string; status: IntegrationStatus; hasRefreshToken: boolean } }>("getIntegration", "alice", { id: aliceIntegration });
    expect(got.response.integration).toMatchObject({ userId: "alice", status: IntegrationStatus.ACTIVE, hasRefreshToken: true });
  });

  it("answers another user's id exactly like a missing one, for every RPC that takes an id", async () => {
    for (const method of ["getIntegration", "refreshIntegration"] as const) {
      const foreign = (await call(method, "bob", { id: aliceIntegration }).catch((e) => e)) as GrpcFailure;
      const missing = (await call(method, "bob", { id: "00000000-0000-4000-8000-000000000000" }).catch((e) => e)) as GrpcFailure;
      expect(foreign.code).toBe(Code.NotFound);
      expect(missing.code).toBe(Code.NotFound);
      expect(foreign.details.replace(aliceIntegration, "ID")).toBe(missing.details.replace("00000000-0000-4000-8000-000000000000", "ID"));
    }
    const listing = (await call("listIntegrations", "bob", { userId: "alice" }).catch((e) => e)) as GrpcFailure;
    expect(listing.code).toBe(Code.PermissionDenied);
  });

  it("refreshes an integration on request through the single-flight path", async () => {
    const result = await call<{ refreshed: boolean; integration: { id: string } }>("refreshIntegration", "alice", { id: aliceIntegration });
    expect(result.response).toMatchObject({ refreshed: true, integration: { id: aliceIntegration } });
  });

  it("lets an admin page through everyone's integrations with filter-bound page tokens", async () => {
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await call<{ integrations: Array<{ id: string }>; nextPageToken: string }>("listIntegrations", "admin", { pageSize: 2, pageToken });
      seen.push(...page.response.integrations.map((i) => i.id));
      pageToken = page.response.nextPageToken;
    } while (pageToken);
    expect(seen).toHaveLength(4);
    expect(new Set(seen).size).toBe(4);
    const first = await call<{ nextPageToken: string }>("listIntegrations", "admin", { pageSize: 1 });
    const misuse = (await call("listIntegrations", "admin", { pageSize: 1, provider: "sandbox", pageToken: first.response.nextPageToken }).catch((e) => e)) as GrpcFailure;
    expect(misuse.code).toBe(Code.InvalidArgument);
    expect(misuse.fieldViolations?.[0]?.field).toBe("page_token");
    const badSize = (await call("listIntegrations", "admin", { pageSize: 501 }).catch((e) => e)) as GrpcFailure;
    expect(badSize.fieldViolations?.[0]?.field).toBe("page_size");
    const badId = (await call("getIntegration", "admin", { id: "nope" }).catch((e) => e)) as GrpcFailure;
    expect(badId.code).toBe(Code.InvalidArgument);
  });
});

describe("over Connect (HTTP listener)", () => {
  it("applies the same ownership rules", async () => {
    const client = createClient(IntegrationService, createConnectTransport({ baseUrl: httpUrl, httpVersion: "1.1" }));
    const bob = { headers: { authorization: `Bearer ${tokens.bob}` } };
    const list = await client.listIntegrations({}, bob);
    expect(list.integrations).toHaveLength(3);
    expect(JSON.stringify(list.integrations, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toMatch(/"(accessToken|refreshToken)"/);
    const foreign = await client.getIntegration({ id: aliceIntegration }, bob).catch((e: unknown) => ConnectError.from(e));
    expect((foreign as ConnectError).code).toBe(Code.NotFound);
    const foreignDelete = await client.deleteIntegration({ id: aliceIntegration }, bob).catch((e: unknown) => ConnectError.from(e));
    expect((foreignDelete as ConnectError).code).toBe(Code.NotFound);
    expect((await client.getIntegration({ id: aliceIntegration }, { headers: { authorization: `Bearer ${tokens.alice}` } })).integration?.status).toBe(
      IntegrationStatus.ACTIVE,
    );
  });
});
