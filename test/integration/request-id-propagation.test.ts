/**
 * A call's request id goes wherever the call goes, with no parameter passed for it: onto every
 * log line written while it runs (handler, nested async work, child loggers, the interceptors'
 * own lines, between the messages of a stream), onto the provider's token / revocation /
 * userinfo requests and onto the Vault transit requests made for it. Concurrent calls keep
 * their own ids. Background work gets an id of its own.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type ServiceImpl } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createSecret } from "../../src/config/secret.js";
import type { VaultConfig } from "../../src/config/types.js";
import { createVaultTransitCipher } from "../../src/crypto/vault-transit-cipher.js";
import type { RotatableCipher } from "../../src/crypto/rotatable-cipher.js";
import type { ProviderClient } from "../../src/domain/ports.js";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { runInBackgroundContext, runWithRequestContext } from "../../src/observability/request-context.js";
import { createProviderClient } from "../../src/providers/create-provider-client.js";
import { bindService, callOf } from "../../src/transport/service-binding.js";
import { testProviderConfig } from "../support/peers/provider-config.js";
import { startVaultEmulator, type VaultEmulator } from "../support/vault-transit-emulator.js";
import { startTransportFixture, type TransportFixture } from "../support/transport-fixture.js";
import { grpcClient, unary } from "../support/grpc-client.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface SeenRequest {
  readonly path: string;
  readonly requestId: string | undefined;
}

/** A plain OAuth 2.0 server: token (refresh grant), RFC 7009 revocation and userinfo. */
async function startProviderPeer(): Promise<{ url: string; seen: SeenRequest[]; close(): Promise<void> }> {
  const seen: SeenRequest[] = [];
  const server: Server = createServer((request, response) => {
    const header = request.headers["x-request-id"];
    seen.push({ path: new URL(request.url ?? "/", "http://peer").pathname, requestId: Array.isArray(header) ? header[0] : header });
    request.resume();
    request.on("end", () => {
      const json = (body: unknown) => response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      switch (seen.at(-1)?.path) {
        case "/token":
          return json({ access_token: "fresh-access-token", token_type: "Bearer", expires_in: 3600, refresh_token: "fresh-refresh-token" });
        case "/revoke":
          return response.writeHead(200).end();
        case "/userinfo":
          return json({ sub: "account-1", email: "alice@example.com" });
        default:
          return response.writeHead(404).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function vaultConfig(vault: VaultEmulator): VaultConfig {
  return {
    address: vault.url,
    token: createSecret(vault.rootToken),
    roleId: undefined,
    secretId: undefined,
    kubernetesRole: undefined,
    kubernetesTokenPath: "/unused",
    namespace: undefined,
    mount: vault.mount,
    key: "oauth-broker",
    createKey: true,
    timeoutMs: 2000,
  };
}

/** Every method of `service` answering empty, so a binding can be mounted with one method overridden. */
function emptyImpl(service: DescService): Record<string, unknown> {
  const impl: Record<string, unknown> = {};
  for (const method of service.methods) impl[method.localName] = method.methodKind === "unary" ? () => ({}) : async function* () {};
  return impl;
}

let peer: Awaited<ReturnType<typeof startProviderPeer>>;
let vault: VaultEmulator;
let fixture: TransportFixture;
let provider: ProviderClient;
let cipher: RotatableCipher;

beforeAll(async () => {
  peer = await startProviderPeer();
  vault = await startVaultEmulator();
  // The fixture's logger is the one under test: the handlers, the provider client and the
  // cipher all write to it, as they do in the broker.
  const providerService = {
    ...emptyImpl(ProviderService),
    async listProviders(_request: unknown, ctx: Parameters<typeof callOf>[0]) {
      const expected = callOf(ctx).requestId;
      fixture.logger.info({ expected }, "handler started");
      await sleep(5);
      await Promise.all([
        (async () => {
          await sleep(1);
          fixture.logger.child({ component: "nested" }).info({ expected }, "nested work");
        })(),
        new Promise<void>((resolve) => setImmediate(() => resolve(fixture.logger.warn({ expected }, "from setImmediate")))),
      ]);
      await provider.refresh("stored-refresh-token");
      await cipher.encrypt({ plaintext: "token", context: `row-${expected}` });
      fixture.logger.info({ expected }, "handler finished");
      return { providers: [] };
    },
  } as unknown as ServiceImpl<typeof ProviderService>;
  const integrationService = {
    ...emptyImpl(IntegrationService),
    async *watchIntegrations(_request: unknown, ctx: Parameters<typeof callOf>[0]) {
      const expected = callOf(ctx).requestId;
      for (let i = 0; i < 3; i++) {
        await sleep(2);
        fixture.logger.info({ expected, i }, "stream message");
        yield { cursor: String(i) };
      }
    },
  } as unknown as ServiceImpl<typeof IntegrationService>;
  fixture = await startTransportFixture({
    bindings: [bindService(ProviderService, providerService), bindService(IntegrationService, integrationService)],
  });
  provider = await createProviderClient(
    testProviderConfig({
      id: "plain",
      kind: "oauth2",
      clientSecret: "client-secret-value",
      endpoints: { authorization: `${peer.url}/authorize`, token: `${peer.url}/token`, revocation: `${peer.url}/revoke`, userinfo: `${peer.url}/userinfo` },
    }),
    { logger: fixture.logger },
  );
  cipher = await createVaultTransitCipher({ config: vaultConfig(vault), logger: fixture.logger });
});

afterAll(async () => {
  await cipher?.close();
  await fixture?.close();
  await vault?.close();
  await peer?.close();
});

beforeEach(() => {
  peer.seen.length = 0;
});

describe("request ids", () => {
  it("tag every log line of a call, its provider request and its Vault request — per call, concurrently", async () => {
    const before = vault.requests().length;
    fixture.logger.info("outside any call");
    const connect = createClient(ProviderService, createConnectTransport({ baseUrl: fixture.httpUrl, httpVersion: "1.1" }));
    const grpc = grpcClient(fixture.grpcAddress);
    try {
      await Promise.all([
        connect.listProviders({}, { headers: { "x-request-id": "req-connect-1" } }),
        connect.listProviders({}, { headers: { "x-request-id": "req-connect-2" } }),
        unary(grpc, ProviderService.method.listProviders, {}, { metadata: { "x-request-id": "req-grpc-3" } }),
      ]);
    } finally {
      grpc.close();
    }
    const ids = ["req-connect-1", "req-connect-2", "req-grpc-3"];

    const lines = fixture.log.lines;
    const handlerLines = lines.filter((line) => line["expected"] !== undefined);
    expect(handlerLines).toHaveLength(ids.length * 4);
    for (const line of handlerLines) expect(line["requestId"], JSON.stringify(line)).toBe(line["expected"]);
    // The observe interceptor's line for each call, and nothing outside a call, carry one.
    const rpcLines = lines.filter((line) => line["msg"] === "rpc");
    expect(rpcLines.map((line) => line["requestId"]).sort()).toEqual(ids);
    expect(lines.find((line) => line["msg"] === "outside any call")).not.toHaveProperty("requestId");
    // Every line written from the first handler line on belongs to one of the calls.
    const first = lines.findIndex((line) => line["expected"] !== undefined);
    for (const line of lines.slice(first)) expect(ids, JSON.stringify(line)).toContain(line["requestId"]);

    expect(peer.seen.filter((r) => r.path === "/token").map((r) => r.requestId).sort()).toEqual(ids);
    const encrypts = vault.requests().slice(before).filter((r) => r.path.endsWith("/encrypt/oauth-broker"));
    expect(encrypts.map((r) => r.requestId).sort()).toEqual(ids);
  });

  it("stay on the log lines a streaming handler writes between messages", async () => {
    const connect = createClient(IntegrationService, createConnectTransport({ baseUrl: fixture.httpUrl, httpVersion: "1.1" }));
    const received: string[] = [];
    for await (const message of connect.watchIntegrations({}, { headers: { "x-request-id": "req-stream-1" } })) received.push(message.cursor);
    expect(received).toEqual(["0", "1", "2"]);
    const streamLines = fixture.log.lines.filter((line) => line["msg"] === "stream message");
    expect(streamLines.map((line) => line["requestId"])).toEqual(["req-stream-1", "req-stream-1", "req-stream-1"]);
  });

  it("go on revocation and userinfo requests made on behalf of a call", async () => {
    await runWithRequestContext({ requestId: "req-revoke-7" }, async () => {
      expect(await provider.revoke("some-refresh-token", "refresh_token")).toEqual({ outcome: "revoked" });
      await provider.fetchAccount?.("some-access-token");
    });
    expect(peer.seen).toEqual([
      { path: "/revoke", requestId: "req-revoke-7" },
      { path: "/userinfo", requestId: "req-revoke-7" },
    ]);
  });

  it("are generated for background work: one per job run, on its requests and its log lines", async () => {
    const before = fixture.log.lines.length;
    await runInBackgroundContext("proactive-refresh", async () => {
      await provider.refresh("stored-refresh-token");
      fixture.logger.info("refreshed ahead");
    });
    await runInBackgroundContext("proactive-refresh", () => provider.refresh("stored-refresh-token"));
    // Outside any context a request still gets an id of its own.
    await provider.refresh("stored-refresh-token");
    const [first, second, third] = peer.seen.map((r) => r.requestId);
    for (const id of [first, second, third]) expect(id).toMatch(UUID);
    expect(new Set([first, second, third]).size).toBe(3);
    const jobLine = fixture.log.lines.slice(before).find((line) => line["msg"] === "refreshed ahead");
    expect(jobLine).toMatchObject({ requestId: first, job: "proactive-refresh" });
  });
});
