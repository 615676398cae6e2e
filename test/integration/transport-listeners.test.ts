/**
 * Both listeners, every protocol: grpc-js on the gRPC port; Connect JSON over HTTP/1.1,
 * gRPC-Web over HTTP/1.1 and gRPC over h2c on the HTTP port — one implementation, the same
 * interceptors, the same errors.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema, RetryInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import * as reflectionV1 from "../../src/gen/grpc/reflection/v1/reflection_pb.js";
import * as reflectionV1alpha from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { GetAccessTokenResponseSchema, TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { markReusable } from "../../src/transport/reusable-message.js";
import { BrokerError } from "../../src/domain/errors.js";
import { bindService } from "../../src/transport/service-binding.js";
import { createProviderServiceHandlers } from "../../src/transport/handlers/provider-service.js";
import { createSecret } from "../../src/config/secret.js";
import type { ProviderConfig } from "../../src/config/types.js";
import { startTransportFixture, type TransportFixture } from "../support/transport-fixture.js";
import { bidiExchange, grpcClient, serverStream, unary, type GrpcFailure } from "../support/grpc-client.js";

const google: ProviderConfig = {
  id: "google",
  kind: "google",
  displayName: "Google",
  clientId: "client-id",
  clientSecret: createSecret("s3cret-value"),
  clientAuthMethod: "client_secret_post",
  endpoints: {},
  defaultScopes: ["openid", "email"],
  allowedScopes: ["openid", "email", "profile"],
  pkce: true,
  authorizationParams: {},
  defaultAccessTokenLifetimeSeconds: 3600,
  tenant: undefined,
  timeoutMs: 1000,
  maxConcurrency: 4,
};

let fixture: TransportFixture;
const reusableResponse = markReusable(create(GetAccessTokenResponseSchema, { accessToken: "the-same-answer", tokenType: "Bearer" }));

beforeAll(async () => {
  fixture = await startTransportFixture({
    bindings: [
      bindService(
        ProviderService,
        createProviderServiceHandlers({ providers: () => [google], redirectUri: (id) => `http://127.0.0.1:8080/oauth/callback/${id}` }),
      ),
      bindService(TokenService, {
        getAccessToken(request, ctx) {
          if (request.integrationId === "headers") {
            ctx.responseHeader.set("x-handler-saw", ctx.requestHeader.get("x-probe") ?? "nothing");
            ctx.responseTrailer.set("x-handler-trailer", "done");
            return reusableResponse;
          }
          if (request.integrationId === "") {
            throw new BrokerError("invalid_argument", "integration_id: required", {
              fieldViolations: [{ field: "integration_id", description: "required" }],
            });
          }
          if (request.integrationId === "busy") {
            throw new BrokerError("provider_unavailable", "the provider is unavailable; retry later", { retryAfterMs: 1500 });
          }
          throw new Error("database password is hunter2");
        },
      }),
    ],
  });
});

afterAll(async () => {
  await fixture?.close();
});

describe("gRPC listener (grpc-js)", () => {
  it("serves ListProviders without any secret", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const { response, headers } = await unary(client, ProviderService.method.listProviders, {});
    expect(response.providers).toHaveLength(1);
    expect(response.providers[0]).toMatchObject({
      id: "google",
      credentialsConfigured: true,
      supportsPkce: true,
      supportsRevocation: true,
      redirectUri: "http://127.0.0.1:8080/oauth/callback/google",
    });
    expect(JSON.stringify(response, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain("s3cret");
    expect(headers.get("x-request-id")[0]).toMatch(/[0-9a-f-]{36}/);
    client.close();
  });

  it("echoes a sane caller request id", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const { headers } = await unary(client, ProviderService.method.listProviders, {}, { metadata: { "x-request-id": "abc-123" } });
    expect(headers.get("x-request-id")[0]).toBe("abc-123");
    client.close();
  });

  it("reads metadata as Headers would (repeated values joined) and sends the handler's headers and trailers with the chain's", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const metadata = { "x-probe": ["one", "two"], "x-request-id": ["abc-123", "def-456"] };
    const first = await unary(client, TokenService.method.getAccessToken, { integrationId: "headers" }, { metadata });
    expect(first.headers.get("x-handler-saw")).toEqual(["one, two"]);
    expect(first.trailers.get("x-handler-trailer")).toEqual(["done"]);
    // Two ids joined are not a sane id: the call gets a fresh one, exactly as over Connect.
    expect(first.headers.get("x-request-id")[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(first.response.accessToken).toBe("the-same-answer");
    // A reusable response is answered again from its kept encoding, intact.
    const second = await unary(client, TokenService.method.getAccessToken, { integrationId: "headers" });
    expect(second.response).toEqual(first.response);
    expect(second.headers.get("x-handler-saw")).toEqual(["nothing"]);
    client.close();
  });

  it("maps broker errors to statuses with ErrorInfo, BadRequest and RetryInfo details", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const invalid = await unary(client, TokenService.method.getAccessToken, {}).catch((e: GrpcFailure) => e);
    expect(invalid).toMatchObject({ code: Code.InvalidArgument, details: "integration_id: required" });
    expect((invalid as GrpcFailure).errorInfo).toMatchObject({ reason: "INVALID_ARGUMENT", domain: "oauth-broker" });
    expect((invalid as GrpcFailure).fieldViolations).toEqual([
      expect.objectContaining({ field: "integration_id", description: "required" }),
    ]);

    const busy = (await unary(client, TokenService.method.getAccessToken, { integrationId: "busy" }).catch((e) => e)) as GrpcFailure;
    expect(busy.code).toBe(Code.Unavailable);
    expect(busy.retryDelayMs).toBe(1500);
    expect(busy.errorInfo?.reason).toBe("PROVIDER_UNAVAILABLE");
    client.close();
  });

  it("hides unexpected errors behind INTERNAL and logs the cause", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const failure = (await unary(client, TokenService.method.getAccessToken, { integrationId: "x" }).catch((e) => e)) as GrpcFailure;
    expect(failure.code).toBe(Code.Internal);
    expect(failure.details).toBe("internal error");
    expect(failure.message).not.toContain("hunter2");
    const line = fixture.log.lines.find((l) => l["msg"] === "rpc failed");
    expect(line).toMatchObject({ grpcCode: "INTERNAL", method: "oauthbroker.v1.TokenService/GetAccessToken" });
    // The cause is in the log for the operator, never in the answer.
    expect(JSON.stringify(line)).toContain("database password is hunter2");
    client.close();
  });

  it("answers UNIMPLEMENTED for unknown methods", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const unknown = await new Promise<GrpcFailure>((resolve) =>
      client.makeUnaryRequest("/oauthbroker.v1.Nope/Nothing", (x: Buffer) => x, (x: Buffer) => x, Buffer.alloc(0), (e) =>
        resolve(e as GrpcFailure),
      ),
    );
    expect(unknown.code).toBe(Code.Unimplemented);
    client.close();
  });

  it("answers bytes that are not the request message with INVALID_ARGUMENT, on both listeners", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    const failure = await new Promise<GrpcFailure>((resolve) =>
      client.makeUnaryRequest("/oauthbroker.v1.ProviderService/ListProviders", (x: Buffer) => x, (x: Buffer) => x, garbage, (e) =>
        resolve(e as GrpcFailure),
      ),
    );
    expect(failure.code).toBe(Code.InvalidArgument);
    expect(failure.details).toContain("oauthbroker.v1.ListProvidersRequest");
    client.close();
    const res = await fetch(`${fixture.httpUrl}/oauthbroker.v1.TokenService/GetAccessToken`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ minValidFor: "soon" }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe("invalid_argument");
  });

  it("serves health Check and Watch, turning NOT_SERVING while draining", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const overall = await unary(client, Health.method.check, { service: "" });
    expect(overall.response.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const perService = await unary(client, Health.method.check, { service: "oauthbroker.v1.ProviderService" });
    expect(perService.response.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const unknown = (await unary(client, Health.method.check, { service: "nope.Service" }).catch((e) => e)) as GrpcFailure;
    expect(unknown.code).toBe(Code.NotFound);

    const watch = serverStream(client, Health.method.watch, { service: "" });
    const iterator = watch.messages[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    fixture.health.setAll(HealthCheckResponse_ServingStatus.NOT_SERVING);
    expect((await iterator.next()).value?.status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
    fixture.health.setAll(HealthCheckResponse_ServingStatus.SERVING);
    expect((await iterator.next()).value?.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    watch.cancel();
    client.close();
  });

  it("refuses business calls while draining but keeps health open", async () => {
    const client = grpcClient(fixture.grpcAddress);
    fixture.setDraining(true);
    try {
      const refused = (await unary(client, ProviderService.method.listProviders, {}).catch((e) => e)) as GrpcFailure;
      expect(refused.code).toBe(Code.Unavailable);
      expect(refused.errorInfo?.reason).toBe("DRAINING");
      await expect(unary(client, Health.method.check, { service: "" })).resolves.toBeDefined();
    } finally {
      fixture.setDraining(false);
    }
    client.close();
  });

  it("serves reflection v1 and v1alpha with complete file descriptors", async () => {
    const client = grpcClient(fixture.grpcAddress);
    for (const api of [reflectionV1, reflectionV1alpha]) {
      // Both versions share field numbers, so the v1 schema reads v1alpha answers too.
      const method = { ...reflectionV1.ServerReflection.method.serverReflectionInfo, parent: api.ServerReflection };
      const [list, file, missing] = await bidiExchange(client, method, [
        { messageRequest: { case: "listServices", value: "" } },
        { messageRequest: { case: "fileContainingSymbol", value: "oauthbroker.v1.TokenService" } },
        { messageRequest: { case: "fileContainingSymbol", value: "nope.Missing" } },
      ]);
      expect(list?.messageResponse.case).toBe("listServicesResponse");
      const names = list?.messageResponse.case === "listServicesResponse" ? list.messageResponse.value.service.map((s) => s.name) : [];
      expect(names).toEqual(
        expect.arrayContaining([
          "oauthbroker.v1.ProviderService",
          "oauthbroker.v1.TokenService",
          "grpc.health.v1.Health",
          "grpc.reflection.v1.ServerReflection",
          "grpc.reflection.v1alpha.ServerReflection",
        ]),
      );
      expect(file?.messageResponse.case).toBe("fileDescriptorResponse");
      const protos =
        file?.messageResponse.case === "fileDescriptorResponse"
          ? file.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b))
          : [];
      expect(protos[0]?.name).toBe("oauthbroker/v1/token_service.proto");
      expect(protos.map((p) => p.name)).toEqual(
        expect.arrayContaining(["google/protobuf/duration.proto", "google/protobuf/timestamp.proto", "oauthbroker/v1/integration.proto"]),
      );
      // Maps survive: the map entry of Integration is present as a nested type.
      const integrationFile = protos.find((p) => p.name === "oauthbroker/v1/integration.proto");
      const integration = integrationFile?.messageType.find((m) => m.name === "Integration");
      expect(integration?.nestedType.map((n) => n.name)).toContain("ExternalAccountAttributesEntry");
      expect(missing?.messageResponse.case).toBe("errorResponse");
    }
    client.close();
  });
});

describe("HTTP listener (connect-node)", () => {
  it("answers Connect JSON over HTTP/1.1 as a browser would call it", async () => {
    const res = await fetch(`${fixture.httpUrl}/oauthbroker.v1.ProviderService/ListProviders`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBeTruthy();
    const body = (await res.json()) as { providers: Array<{ id: string }> };
    expect(body.providers.map((p) => p.id)).toEqual(["google"]);
  });

  it("returns Connect errors with details over HTTP/1.1", async () => {
    const res = await fetch(`${fixture.httpUrl}/oauthbroker.v1.TokenService/GetAccessToken`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ integrationId: "busy" }),
    });
    expect(res.status).toBe(503);
    const body = (await res.json()) as { code: string; message: string; details: Array<{ type: string }> };
    expect(body.code).toBe("unavailable");
    expect(body.details.map((d) => d.type)).toEqual(["google.rpc.ErrorInfo", "google.rpc.RetryInfo"]);
  });

  it("serves gRPC-Web over HTTP/1.1 and gRPC over h2c on the same port", async () => {
    const grpcWeb = createClient(ProviderService, createGrpcWebTransport({ baseUrl: fixture.httpUrl, httpVersion: "1.1" }));
    expect((await grpcWeb.listProviders({})).providers[0]?.id).toBe("google");
    const h2c = createGrpcTransport({ baseUrl: fixture.httpUrl });
    const grpcOverH2 = createClient(ProviderService, h2c);
    expect((await grpcOverH2.listProviders({})).providers[0]?.id).toBe("google");
    const connectH2 = createClient(TokenService, createConnectTransport({ baseUrl: fixture.httpUrl, httpVersion: "2" }));
    const failure = await connectH2.getAccessToken({ integrationId: "busy" }).catch((e: unknown) => ConnectError.from(e));
    expect(failure).toBeInstanceOf(ConnectError);
    expect((failure as ConnectError).code).toBe(Code.Unavailable);
    const [info] = (failure as ConnectError).findDetails(ErrorInfoSchema);
    expect(info?.reason).toBe("PROVIDER_UNAVAILABLE");
    const [retry] = (failure as ConnectError).findDetails(RetryInfoSchema);
    expect(Number(retry?.retryDelay?.seconds)).toBe(1);
  });

  it("serves health and reflection over h2c too", async () => {
    const h2c = createGrpcTransport({ baseUrl: fixture.httpUrl });
    const health = createClient(Health, h2c);
    expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const reflection = createClient(reflectionV1.ServerReflection, h2c);
    async function* one() {
      yield create(reflectionV1.ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
    }
    const responses = [];
    for await (const r of reflection.serverReflectionInfo(one())) responses.push(r);
    expect(responses[0]?.messageResponse.case).toBe("listServicesResponse");
  });

  it("counts calls by method and code in the metrics", async () => {
    const { body } = await fixture.metrics.render();
    expect(body).toMatch(/grpc_server_handled_total\{grpc_service="oauthbroker.v1.ProviderService",grpc_method="ListProviders",grpc_code="OK"\} \d+/);
    expect(body).toMatch(/grpc_server_handled_total\{[^}]*grpc_method="GetAccessToken",grpc_code="UNAVAILABLE"\} \d+/);
    expect(body).toContain("grpc_server_handling_seconds_bucket");
    void toBinary;
  });
});
