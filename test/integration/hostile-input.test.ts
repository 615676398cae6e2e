/**
 * Hostile input against the whole broker, on both listeners and every protocol (Connect binary
 * and JSON, gRPC-Web, gRPC over h2c on the HTTP port, gRPC on the gRPC port): gzip bombs with and
 * without credentials, oversized bodies, undecodable bytes, oversized fields. Each case asserts
 * the status, the size of the answer, the memory the attack cost, and that a normal call by
 * another caller during the attack takes at most a small multiple of the same call just before;
 * then the broker is still healthy. Limits: README "Request limits and refusals".
 */
import { randomBytes } from "node:crypto";
import { createGzip } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { StartAuthorizationRequestSchema } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { envelope, PROTOCOLS, sendRaw, type Protocol } from "../support/raw-rpc.js";
import { startHostileBroker, underAttack, type HostileBroker } from "../support/hostile-broker.js";

const START = "/oauthbroker.v1.AuthorizationService/StartAuthorization";
const MAX_ANSWER_BYTES = 8 * 1024;
/** Far below what any of these attacks costs unbounded (a bomb inflates to 256 MiB). */
const MAX_RSS_GROWTH = 96 * 1024 * 1024;
const MAX_SLOWDOWN = 10;
const BINARY: readonly Protocol[] = PROTOCOLS.filter((p) => p !== "connect-json");

let target: HostileBroker;
/** 256 MiB of zeros, gzipped: about 250 KB. */
let bomb: Buffer;

async function gzipBomb(inflatedBytes: number): Promise<Buffer> {
  const gzip = createGzip({ level: 9 });
  const chunks: Buffer[] = [];
  gzip.on("data", (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise((resolve) => gzip.on("end", resolve));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let written = 0; written < inflatedBytes; written += zeros.length) {
    if (!gzip.write(zeros)) await new Promise((resolve) => gzip.once("drain", resolve));
  }
  gzip.end();
  await done;
  return Buffer.concat(chunks);
}

function encode(protocol: Protocol, init: Parameters<typeof create<typeof StartAuthorizationRequestSchema>>[1]): Uint8Array {
  const message = create(StartAuthorizationRequestSchema, init);
  return protocol === "connect-json"
    ? new TextEncoder().encode(toJsonString(StartAuthorizationRequestSchema, message))
    : toBinary(StartAuthorizationRequestSchema, message);
}

/** The bomb as each protocol compresses a body: the whole body (Connect unary) or the enveloped message. */
function bombBody(protocol: Protocol): { rawBody: Uint8Array; headers: Record<string, string> } {
  if (protocol === "connect-proto" || protocol === "connect-json") return { rawBody: bomb, headers: { "content-encoding": "gzip" } };
  return { rawBody: envelope(bomb, true), headers: { "grpc-encoding": "gzip" } };
}

type SendOptions = Parameters<typeof sendRaw>[3];

interface Case {
  readonly name: string;
  readonly protocols: readonly Protocol[];
  /** Built before the measurement: the attacker's own work is not the broker's. */
  readonly request: (protocol: Protocol) => SendOptions;
  readonly code: Code;
  readonly message?: RegExp;
}

const cases: Case[] = [
  {
    name: "an unauthenticated gzip bomb",
    protocols: PROTOCOLS,
    request: (protocol) => (bombBody(protocol)),
    code: Code.Unauthenticated,
    message: /missing or invalid credentials/,
  },
  {
    name: "an authenticated gzip bomb",
    protocols: PROTOCOLS,
    request: (protocol) => ({ ...bombBody(protocol), authorization: target.attacker }),
    code: Code.ResourceExhausted,
    message: /limits\.maxRequestBytes/,
  },
  {
    name: "an unauthenticated 5 MB body",
    protocols: PROTOCOLS,
    request: () => ({ message: randomBytes(5 * 1024 * 1024) }),
    code: Code.Unauthenticated,
  },
  {
    name: "an authenticated 5 MB body",
    protocols: PROTOCOLS,
    request: (protocol) => ({ message: encode(protocol, { provider: "sandbox", userId: "u".repeat(5_000_000) }), authorization: target.attacker }),
    code: Code.ResourceExhausted,
    message: /1048576 bytes \(limits\.maxRequestBytes\)/,
  },
  {
    name: "an authenticated 32 MB body over HTTP/1.1",
    // Over HTTP/2, Node's session memory bound (10 MB) resets a stream that much unread data
    // piles up on, before any status: refused as well, but not with a status to assert.
    protocols: ["connect-proto", "connect-json", "grpc-web"],
    request: () => ({ message: Buffer.alloc(32 * 1024 * 1024, 0x20), authorization: target.attacker }),
    code: Code.ResourceExhausted,
    message: /limits\.maxRequestBytes/,
  },
  {
    name: "a truncated protobuf message (premature EOF)",
    protocols: BINARY,
    request: () => ({ message: Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), authorization: target.attacker }),
    code: Code.InvalidArgument,
    message: /^the request is not a valid oauthbroker\.v1\.StartAuthorizationRequest message$/,
  },
  {
    name: "protobuf groups nested past the parser's recursion limit",
    protocols: BINARY,
    // Field 15, wire type 3 (start group), 20,000 deep.
    request: () => ({ message: Buffer.alloc(20_000, 0x7b), authorization: target.attacker }),
    code: Code.InvalidArgument,
    message: /^the request is not a valid oauthbroker\.v1\.StartAuthorizationRequest message$/,
  },
  {
    name: "JSON that is not the message",
    protocols: ["connect-json"],
    request: () => ({ message: new TextEncoder().encode(`${"[".repeat(50_000)}`), authorization: target.attacker }),
    code: Code.InvalidArgument,
    message: /^the request is not a valid oauthbroker\.v1\.StartAuthorizationRequest message$/,
  },
  {
    name: "10,000 scopes",
    protocols: PROTOCOLS,
    request: (protocol) => ({
        message: encode(protocol, { provider: "sandbox", userId: "alice", scopes: Array.from({ length: 10_000 }, (_, i) => `scope-${i}`) }),
        authorization: target.attacker,
      }),
    code: Code.InvalidArgument,
    message: /^scopes: at most 64 items \(got 10000\)$/,
  },
  {
    name: "64 scopes that are each too long",
    protocols: PROTOCOLS,
    request: (protocol) => ({
        message: encode(protocol, { provider: "sandbox", userId: "alice", scopes: Array.from({ length: 64 }, (_, i) => `${i}-${"s".repeat(5000)}`) }),
        authorization: target.attacker,
      }),
    code: Code.InvalidArgument,
    message: /64 fields are over their limits.*\(54 more field violations not listed\)/,
  },
];

beforeAll(async () => {
  bomb = await gzipBomb(256 * 1024 * 1024);
  target = await startHostileBroker();
}, 60_000);

afterAll(async () => {
  await target?.close();
});

describe.each(cases)("$name", (testCase) => {
  it(`is refused on every protocol of both listeners, cheaply, while other callers go on`, async () => {
    const requests = testCase.protocols.map((protocol) => ({ protocol, options: testCase.request(protocol) }));
    const attacks = requests.flatMap(({ protocol, options }) =>
      [0].map(() => () => sendRaw(target, protocol, START, options).then((answer) => ({ protocol, answer }))),
    );
    const { results, slowdown, rssGrowth } = await underAttack(target, attacks);
    for (const { protocol, answer } of results) {
      expect({ protocol, code: answer.code }).toEqual({ protocol, code: testCase.code });
      if (testCase.message) expect(answer.message, protocol).toMatch(testCase.message);
      expect(answer.answerBytes, protocol).toBeLessThanOrEqual(MAX_ANSWER_BYTES);
      expect(answer.message, protocol).not.toMatch(/premature|recursion|EOF|internal/i);
    }
    expect(rssGrowth, "resident memory growth").toBeLessThan(MAX_RSS_GROWTH);
    expect(slowdown, "a bystander's call during the attack over the same call around it").toBeLessThan(MAX_SLOWDOWN);
    const health = await fetch(`http://127.0.0.1:${target.httpPort}/readyz`);
    expect(health.status).toBe(200);
  }, 60_000);
});

describe("field limits", () => {
  it("refuses a 900 KB user_id (under the body limit) in a small answer and logs at most 1 KiB of it", async () => {
    const userId = `${"v".repeat(900_000)}`;
    for (const protocol of PROTOCOLS) {
      const answer = await sendRaw(target, protocol, START, { message: encode(protocol, { provider: "sandbox", userId }), authorization: target.attacker });
      expect(answer.code, protocol).toBe(Code.InvalidArgument);
      expect(answer.message, protocol).toBe("user_id: at most 256 characters (got 900000)");
      expect(answer.answerBytes, protocol).toBeLessThanOrEqual(MAX_ANSWER_BYTES);
    }
    expect(target.log.text()).not.toContain("v".repeat(1025));
  });

  it("accepts every field at its maximum", async () => {
    const answer = await sendRaw(target, "connect-json", START, {
      message: encode("connect-json", {
        provider: "sandbox",
        userId: "u".repeat(256),
        scopes: Array.from({ length: 64 }, () => "openid"),
        returnTo: `http://127.0.0.1:${target.httpPort}/${"r".repeat(2048 - `http://127.0.0.1:${target.httpPort}/`.length)}`,
      }),
      authorization: target.attacker,
    });
    expect(answer.message).not.toMatch(/at most/);
  });

  it("bounds a plain HTTP route's body by the same limit", async () => {
    const res = await fetch(`http://127.0.0.1:${target.httpPort}/oauth/callback/sandbox`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: Buffer.alloc(2 * 1024 * 1024, 0x61),
    }).catch((error: unknown) => error);
    if (res instanceof Response) {
      expect(res.status).toBe(413);
      expect(await res.text()).toContain("limits.maxRequestBytes");
    } else {
      // The broker may close before the client finished sending: the body was not taken either way.
      expect(res).toBeInstanceOf(Error);
    }
  });
});
