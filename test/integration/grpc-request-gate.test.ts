/**
 * The gate in front of every gRPC method, on a real grpc-js server: a call the admission lets in
 * from the headers grpc-js already parsed goes straight to the handler (no layer of its own); a
 * refused one never has its body read; one whose admission is known only later waits for it.
 * Either way grpc-js's size refusal reads as the broker's.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNREAD_BODY, type Admission } from "../../src/transport/admission.js";
import { createGrpcRequestGate } from "../../src/transport/grpc-request-gate.js";

const PATH = "/test.v1.Echo/Say";
const MAX_REQUEST_BYTES = 1024;
const raw = (bytes: Buffer): Buffer => bytes;

describe("the gRPC request gate", () => {
  const admissions: string[] = [];
  /** Each time the admission was asked (a later-known answer may cost a full verification). */
  let asked = 0;
  const received: unknown[] = [];
  let server: grpc.Server;
  let client: grpc.Client;

  // "now": admitted at once; "later": admitted after a promise; anything else refused.
  const admission: Admission = (_service, authorization) => {
    asked += 1;
    if (authorization === "Bearer now") return true;
    if (authorization === "Bearer later") return Promise.resolve(true);
    return false;
  };

  beforeAll(async () => {
    server = new grpc.Server({
      "grpc.max_receive_message_length": MAX_REQUEST_BYTES,
      interceptors: [createGrpcRequestGate({ admission, maxRequestBytes: MAX_REQUEST_BYTES, onAdmission: (how) => admissions.push(how) })],
    });
    server.addService(
      { say: { path: PATH, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } },
      {
        say: (call: grpc.ServerUnaryCall<unknown, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          received.push(call.request);
          if (call.request === UNREAD_BODY) callback({ code: grpc.status.UNAUTHENTICATED, details: "missing or invalid credentials" });
          else callback(null, Buffer.concat([Buffer.from("echo:"), call.request as Buffer]));
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    client.close();
    server.forceShutdown();
  });

  function say(authorization: string | undefined, body: Buffer): Promise<Buffer> {
    const metadata = new grpc.Metadata();
    if (authorization !== undefined) metadata.set("authorization", authorization);
    return new Promise((resolve, reject) =>
      client.makeUnaryRequest(PATH, raw, raw, body, metadata, (error, response) => (error || !response ? reject(error) : resolve(response))),
    );
  }

  it("lets a caller admitted at once straight through to the handler", async () => {
    admissions.length = 0;
    expect((await say("Bearer now", Buffer.from("hi"))).toString()).toBe("echo:hi");
    expect(admissions).toEqual(["at-once"]);
  });

  it("waits for an admission known only later, and then reads the body", async () => {
    admissions.length = 0;
    asked = 0;
    expect((await say("Bearer later", Buffer.from("hello"))).toString()).toBe("echo:hello");
    expect(admissions).toEqual(["gated"]);
    expect(asked).toBe(1);
  });

  it("never reads the body of a refused call: the handler gets the stand-in", async () => {
    admissions.length = 0;
    received.length = 0;
    asked = 0;
    await expect(say(undefined, Buffer.from("secret body"))).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    expect(admissions).toEqual(["gated"]);
    expect(asked).toBe(1);
    expect(received).toEqual([UNREAD_BODY]);
  });

  it("words grpc-js's size refusal as the broker's on both paths", async () => {
    for (const authorization of ["Bearer now", "Bearer later"]) {
      const error = await say(authorization, Buffer.alloc(MAX_REQUEST_BYTES + 1)).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
      expect((error as grpc.ServiceError).details).toMatch(/limits\.maxRequestBytes/);
    }
  });
});
