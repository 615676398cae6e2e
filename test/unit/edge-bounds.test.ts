/**
 * The bounds of the edge without a network: request field limits, the size of an error answer
 * whatever the error carries, log truncation, and the HTTP listener's body read (an unadmitted
 * body is neither read nor inflated; a bomb stops at the limit).
 */
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { BrokerError } from "../../src/domain/errors.js";
import { StartAuthorizationRequestSchema } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { GetAccessTokenRequestSchema } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { MAX_FIELD_VIOLATIONS, toConnectError } from "../../src/transport/error-mapping.js";
import { toGrpcStatus } from "../../src/transport/grpc-adapter.js";
import { prepareRequest } from "../../src/transport/http-request-body.js";
import { DEFAULT_FIELD_LIMIT, FIELD_LIMITS, requestLimitViolations, wireCountViolations } from "../../src/transport/request-limits.js";
import { UNREAD_BODY } from "../../src/transport/admission.js";
import { captureLogger } from "../support/log-capture.js";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";

describe("request field limits", () => {
  it("names each field over its limit and passes one at its limit", () => {
    const atLimit = create(StartAuthorizationRequestSchema, { provider: "p".repeat(64), userId: "u".repeat(256), returnTo: "r".repeat(2048), scopes: Array(64).fill("s") });
    expect(requestLimitViolations(StartAuthorizationRequestSchema, atLimit)).toEqual([]);
    const over = create(StartAuthorizationRequestSchema, { provider: "p".repeat(65), userId: "u".repeat(257), returnTo: "r".repeat(2049), scopes: Array(65).fill("s") });
    expect(requestLimitViolations(StartAuthorizationRequestSchema, over).map((v) => v.field)).toEqual(["provider", "scopes", "return_to", "user_id"]);
    const longScope = create(GetAccessTokenRequestSchema, { integrationId: "i".repeat(129), scopes: ["ok", "s".repeat(257)] });
    expect(requestLimitViolations(GetAccessTokenRequestSchema, longScope)).toEqual([
      { field: "integration_id", description: "at most 128 characters (got 129)" },
      { field: "scopes[1]", description: "at most 256 characters (got 257)" },
    ]);
  });
});

describe("error answers", () => {
  it("list at most 10 violations, say how many more, and stay small on the gRPC trailer", () => {
    const huge = "\u00e9".repeat(1_000_000);
    const error = new BrokerError("invalid_argument", `scopes: ${huge}`, {
      fieldViolations: Array.from({ length: 10_000 }, (_, i) => ({ field: `scopes[${i}]`, description: `${huge} is not allowed` })),
      metadata: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`key${i}`, huge])),
    });
    const mapped = toConnectError(error);
    const badRequest = mapped.details.find((detail) => "desc" in detail && detail.desc.typeName === "google.rpc.BadRequest");
    const listed = (badRequest as unknown as { value: { fieldViolations: unknown[] } }).value.fieldViolations.length;
    expect(listed).toBeGreaterThan(0);
    expect(listed).toBeLessThanOrEqual(10);
    expect(mapped.rawMessage).toMatch(new RegExp(`^scopes: é+…\\[truncated, 1000008 characters\\] \\(${10_000 - listed} more field violations not listed\\)$`));
    const status = toGrpcStatus(error);
    const trailer = (status.metadata ?? new grpc.Metadata()).get("grpc-status-details-bin")[0] as Buffer;
    const wire = encodeURI(status.details ?? "").length + trailer.toString("base64").length;
    expect(wire).toBeLessThan(8 * 1024);
  });
});

describe("log lines", () => {
  it("carry at most 1 KiB of any value, with its length", async () => {
    const { logger, log } = captureLogger("info");
    const userId = "x".repeat(5_000_000);
    logger.info({ userId, nested: { scopes: [userId] } }, `refused ${userId}`);
    logger.warn({ err: new Error(`bad user ${userId}`) }, "failed");
    await new Promise((resolve) => setImmediate(resolve));
    for (const line of log.text().split("\n")) {
      expect(line.length).toBeLessThan(12 * 1024);
      expect(line).not.toContain("x".repeat(1025));
    }
    expect(log.text()).toContain("truncated, 5000000 characters");
  });
});

function universal(header: Record<string, string>, method = "POST"): UniversalServerRequest {
  return {
    httpVersion: "1.1",
    method,
    url: "http://broker.invalid/oauthbroker.v1.AuthorizationService/StartAuthorization",
    header: new Headers(header),
    body: (async function* () {})(),
    signal: new AbortController().signal,
    contextValues: undefined as never,
  } as unknown as UniversalServerRequest;
}

describe("the HTTP listener's body read", () => {
  it("neither reads nor inflates the body of a caller not admitted", async () => {
    let pulled = 0;
    const body = new Readable({
      read() {
        pulled++;
        // Never ends: if the read waited for the body, this test would time out.
      },
    });
    const prepared = await prepareRequest(universal({ "content-type": "application/proto", "content-encoding": "gzip" }), body, StartAuthorizationRequestSchema, false, 1024);
    expect(prepared.refusal).toBe(UNREAD_BODY);
    expect(prepared.leftUnread).toBe(true);
    expect(pulled).toBeLessThanOrEqual(1);
  });

  it("stops a gzip bomb at the limit and refuses it naming the limit", async () => {
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    const prepared = await prepareRequest(universal({ "content-type": "application/proto", "content-encoding": "gzip" }), Readable.from([bomb]), StartAuthorizationRequestSchema, true, 4096);
    expect(prepared.refusal?.error.code).toBe("request_too_large");
    expect(prepared.refusal?.error.message).toContain("4096 bytes (limits.maxRequestBytes)");
  });

  it("hands connect the inflated message when it decodes", async () => {
    const message = toBinary(StartAuthorizationRequestSchema, create(StartAuthorizationRequestSchema, { provider: "sandbox" }));
    const prepared = await prepareRequest(universal({ "content-type": "application/proto", "content-encoding": "gzip" }), Readable.from([gzipSync(message)]), StartAuthorizationRequestSchema, true, 4096);
    expect(prepared.refusal).toBeUndefined();
    expect(prepared.request.header.get("content-encoding")).toBeNull();
    const chunks: Uint8Array[] = [];
    for await (const chunk of prepared.request.body as AsyncIterable<Uint8Array>) chunks.push(chunk);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(message));
  });
});

describe("README", () => {
  it("lists every field limit the edge enforces", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("### Request limits and refusals"), readme.indexOf("## Tokens at rest"));
    for (const name of Object.keys(FIELD_LIMITS)) expect(section, name).toContain(`\`${name}\``);
    expect(section).toContain(`${DEFAULT_FIELD_LIMIT.maxLength} characters / ${DEFAULT_FIELD_LIMIT.maxItems} items`);
    expect(section).toContain(`${MAX_FIELD_VIOLATIONS} field`);
  });
});

describe("counting repeated fields on the wire", () => {
  it("finds too many items without decoding them, and passes a message within its limits", () => {
    const many = toBinary(StartAuthorizationRequestSchema, create(StartAuthorizationRequestSchema, { scopes: Array(65).fill("s") }));
    expect(wireCountViolations(StartAuthorizationRequestSchema, many)).toEqual([{ field: "scopes", description: "at most 64 items (got 65)" }]);
    const fine = toBinary(StartAuthorizationRequestSchema, create(StartAuthorizationRequestSchema, { scopes: Array(64).fill("s") }));
    expect(wireCountViolations(StartAuthorizationRequestSchema, fine)).toEqual([]);
    expect(() => wireCountViolations(StartAuthorizationRequestSchema, Uint8Array.from([0x0a, 0xff]))).toThrow();
  });
});
