/**
 * The call's abort signal on the gRPC listener, which is made only when a handler reads it
 * (service-binding.ts, grpc-adapter.ts): it still aborts when the caller's deadline passes, when
 * the caller cancels, when the broker shuts down, and a signal read after the call ended is
 * already aborted.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { GetAccessTokenRequestSchema, TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { BrokerError } from "../../src/domain/errors.js";
import { bindService, callOf } from "../../src/transport/service-binding.js";
import type { CallContext } from "../../src/transport/call.js";
import { startTransportFixture, type TransportFixture } from "../support/transport-fixture.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";

interface Observed {
  readonly reason: unknown;
}

/** Wrapped, so that finding the entry does not wait for the abort. */
interface Waiting {
  readonly seen: Promise<Observed>;
}

/** Values by key that a test can await before they arrive: a handler's arrival is the signal, not a poll. */
class Arrivals<T> {
  private readonly entries = new Map<string, { readonly value: Promise<T>; readonly resolve: (value: T) => void }>();

  set(key: string, value: T): void {
    this.entry(key).resolve(value);
  }

  get(key: string): Promise<T> {
    return this.entry(key).value;
  }

  private entry(key: string) {
    let entry = this.entries.get(key);
    if (entry === undefined) {
      let resolve: (value: T) => void = () => {};
      const value = new Promise<T>((r) => (resolve = r));
      entry = { value, resolve };
      this.entries.set(key, entry);
    }
    return entry;
  }
}

function waitingService(observed: Arrivals<Waiting>, ended: Arrivals<CallContext>) {
  return bindService(TokenService, {
    async getAccessToken(request, ctx) {
      const call = callOf(ctx);
      if (request.integrationId.startsWith("quick")) {
        ended.set(request.integrationId, call);
        return {};
      }
      const signal = call.signal;
      const seen = new Promise<Observed>((resolve) => signal.addEventListener("abort", () => resolve({ reason: signal.reason }), { once: true }));
      observed.set(request.integrationId, { seen });
      await seen;
      throw new BrokerError("deadline_exceeded", "gave up");
    },
  });
}

/**
 * Long enough that only a broken listener, not a loaded machine, keeps the call from reaching its
 * handler before the deadline passes; the test checks that it did.
 */
const DEADLINE_MS = 2_000;

describe("the call signal on the gRPC listener", () => {
  const observed = new Arrivals<Waiting>();
  const ended = new Arrivals<CallContext>();
  let fixture: TransportFixture;

  beforeAll(async () => {
    fixture = await startTransportFixture({ bindings: [waitingService(observed, ended)] });
  });

  afterAll(async () => {
    await fixture.close();
  });

  it("aborts when the caller's deadline passes", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const answer = unary(client, TokenService.method.getAccessToken, { integrationId: "deadline" }, { deadlineMs: DEADLINE_MS }).catch((e: unknown) => e);
    const reached = await Promise.race([observed.get("deadline"), answer.then(() => undefined)]);
    if (reached === undefined) throw new Error(`the call ended before its handler was reached (deadline ${DEADLINE_MS} ms)`);
    const failure = (await answer) as GrpcFailure;
    expect(failure.code).toBe(Code.DeadlineExceeded);
    expect((await reached.seen).reason).toBeDefined();
    client.close();
  });

  it("aborts when the caller cancels", async () => {
    const client = grpcClient(fixture.grpcAddress);
    const raw = (bytes: Buffer) => bytes;
    const request = Buffer.from(toBinary(GetAccessTokenRequestSchema, create(GetAccessTokenRequestSchema, { integrationId: "cancel" })));
    const failed = new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.makeUnaryRequest(`/${TokenService.typeName}/GetAccessToken`, raw, raw, request, (error) => resolve(error));
      void observed.get("cancel").then(() => call.cancel());
    });
    expect((await failed)?.code).toBe(Code.Canceled);
    const { seen } = await observed.get("cancel");
    expect((await seen).reason).toBeDefined();
    client.close();
  });

  it("is already aborted when first read after the call ended", async () => {
    const client = grpcClient(fixture.grpcAddress);
    await unary(client, TokenService.method.getAccessToken, { integrationId: "quick-1" });
    const call = await ended.get("quick-1");
    expect(call.signal.aborted).toBe(true);
    client.close();
  });
});

describe("the call signal at shutdown", () => {
  it("aborts a waiting call when the broker shuts down", async () => {
    const observed = new Arrivals<Waiting>();
    const fixture = await startTransportFixture({ bindings: [waitingService(observed, new Arrivals())] });
    const client = grpcClient(fixture.grpcAddress);
    const pending = unary(client, TokenService.method.getAccessToken, { integrationId: "shutdown" }).catch((e: unknown) => e);
    const { seen } = await observed.get("shutdown");
    await fixture.close();
    expect((await seen).reason).toBeDefined();
    await pending;
    client.close();
  });
});
