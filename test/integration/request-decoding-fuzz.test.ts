/**
 * Property: whatever bytes arrive as a request, the broker answers INVALID_ARGUMENT or handles
 * the call — never INTERNAL or UNKNOWN, never with the parser's own words. Random bytes and
 * random mutations (flipped, inserted, deleted bytes, truncation) of valid messages of every
 * unary broker RPC, over every protocol of both listeners (gRPC; Connect binary and JSON,
 * gRPC-Web and gRPC over h2c on the HTTP listener). The seed is fixed: a failure names its case and repeats exactly.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { create, toBinary, toJsonString, type DescMethod } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { AuditService } from "../../src/gen/oauthbroker/v1/audit_service_pb.js";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { IntegrationService } from "../../src/gen/oauthbroker/v1/integration_service_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { PROTOCOLS, sendRaw, type Protocol, type RawAnswer } from "../support/raw-rpc.js";
import { startHostileBroker, type HostileBroker } from "../support/hostile-broker.js";

const CASES_PER_PROTOCOL = 1000;
const SEED = 0x5eed_16;

/** mulberry32: small, fast, and the same sequence on every machine for the same seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const METHODS: DescMethod[] = [TokenService, AuthorizationService, IntegrationService, ProviderService, StatusService, AuditService]
  .flatMap((service) => service.methods)
  .filter((method) => method.methodKind === "unary");

/** A valid, non-trivial request for each method: the seeds the mutations start from. */
function validRequest(method: DescMethod) {
  return create(method.input, {
    integrationId: "00000000-0000-4000-8000-000000000001",
    id: "00000000-0000-4000-8000-000000000001",
    userId: "alice",
    provider: "sandbox",
    scopes: ["openid", "profile"],
    minValidFor: durationFromMs(30_000),
    pageSize: 10,
    state: "abc",
    code: "xyz",
  } as never);
}

function mutate(bytes: Uint8Array, random: () => number): Uint8Array {
  const out = [...bytes];
  const edits = 1 + Math.floor(random() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(random() * (out.length + 1));
    const kind = Math.floor(random() * 4);
    if (kind === 0 && out.length > 0) out[at % out.length] = Math.floor(random() * 256);
    else if (kind === 1) out.splice(at, 0, Math.floor(random() * 256));
    else if (kind === 2) out.splice(at, 1);
    else out.length = Math.min(out.length, at);
  }
  return Uint8Array.from(out);
}

function randomBytes(random: () => number): Uint8Array {
  return Uint8Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256));
}

function fuzzInput(method: DescMethod, protocol: Protocol, random: () => number): Uint8Array {
  const valid = validRequest(method);
  if (protocol === "connect-json") {
    const text = new TextEncoder().encode(toJsonString(method.input, valid));
    return random() < 0.2 ? randomBytes(random) : mutate(text, random);
  }
  return random() < 0.3 ? randomBytes(random) : mutate(toBinary(method.input, valid), random);
}

const ALLOWED = new Set<Code | 0>([
  0,
  Code.InvalidArgument,
  // What a well-formed request may legitimately earn from the handler.
  Code.NotFound,
  Code.FailedPrecondition,
  Code.PermissionDenied,
  Code.Unimplemented,
  Code.ResourceExhausted,
  Code.Unavailable,
]);

let target: HostileBroker;

beforeAll(async () => {
  target = await startHostileBroker();
}, 60_000);

afterAll(async () => {
  await target?.close();
});

describe.each(PROTOCOLS)("request decoding over %s", (protocol) => {
  it(`answers ${CASES_PER_PROTOCOL} random and mutated requests with INVALID_ARGUMENT or a handled outcome, never INTERNAL`, async () => {
    const random = prng(SEED + PROTOCOLS.indexOf(protocol));
    let invalid = 0;
    for (let index = 0; index < CASES_PER_PROTOCOL; index++) {
      const method = METHODS[Math.floor(random() * METHODS.length)]!;
      const message = fuzzInput(method, protocol, random);
      const answer: RawAnswer = await sendRaw(target, protocol, `/${method.parent.typeName}/${method.name}`, { message, authorization: target.attacker });
      const where = `case ${index}: ${method.name} ${Buffer.from(message).toString("hex").slice(0, 200)}`;
      expect(ALLOWED.has(answer.code), `${where} answered ${answer.code} ${answer.message}`).toBe(true);
      expect(answer.message, where).not.toMatch(/premature|recursion|EOF|wire type|invalid UTF-8|parse binary|internal error/i);
      if (answer.code === Code.InvalidArgument) invalid++;
    }
    // The property would hold vacuously if nothing reached the decoder broken.
    expect(invalid).toBeGreaterThan(CASES_PER_PROTOCOL / 10);
    const health = await fetch(`http://127.0.0.1:${target.httpPort}/readyz`);
    expect(health.status).toBe(200);
  }, 120_000);
});

describe.each(["http-grpc", "grpc"] as const)("reflection's request stream over %s", (protocol) => {
  it.each(["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])(
    "answers an undecodable %s request with INVALID_ARGUMENT, not the parser's words",
    async (service) => {
      const truncated = Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);
      const answer = await sendRaw(target, protocol, `/${service}/ServerReflectionInfo`, { message: truncated });
      expect(answer.code, answer.message).toBe(Code.InvalidArgument);
      expect(answer.message).not.toMatch(/EOF|parse/i);
    },
  );
});
