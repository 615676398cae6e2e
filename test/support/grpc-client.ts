/**
 * A plain `@grpc/grpc-js` client for any method of the generated descriptors: what an internal
 * service does when it calls the broker's gRPC listener.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.js";
import { ErrorInfoSchema, RetryInfoSchema, BadRequestSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { createRegistry } from "@bufbuild/protobuf";

function serializers<M extends DescMessage>(schema: M) {
  return {
    serialize: (value: MessageShape<M>) => Buffer.from(toBinary(schema, value)),
    deserialize: (bytes: Buffer) => fromBinary(schema, bytes),
  };
}

export function grpcClient(address: string): grpc.Client {
  return new grpc.Client(address, grpc.credentials.createInsecure());
}

export interface GrpcFailure extends grpc.ServiceError {
  errorInfo?: { reason: string; domain: string; metadata: Record<string, string> };
  retryDelayMs?: number;
  fieldViolations?: Array<{ field: string; description: string }>;
}

const detailRegistry = createRegistry(ErrorInfoSchema, RetryInfoSchema, BadRequestSchema);

/** The error with the `google.rpc` details of its status read into fields. */
export function decorate(error: grpc.ServiceError): GrpcFailure {
  const raw = error.metadata?.get("grpc-status-details-bin")[0];
  if (!raw || typeof raw === "string") return error;
  const status = fromBinary(StatusSchema, raw);
  const out = error as GrpcFailure & Record<string, unknown>;
  for (const any of status.details) {
    const detail = anyUnpack(any, detailRegistry);
    if (!detail) continue;
    if (detail.$typeName === "google.rpc.ErrorInfo") out["errorInfo"] = detail as never;
    if (detail.$typeName === "google.rpc.RetryInfo") {
      const d = (detail as { retryDelay?: { seconds: bigint; nanos: number } }).retryDelay;
      out["retryDelayMs"] = d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : 0;
    }
    if (detail.$typeName === "google.rpc.BadRequest") {
      out["fieldViolations"] = (detail as unknown as { fieldViolations: Array<{ field: string; description: string }> })
        .fieldViolations;
    }
  }
  return out;
}

export function unary<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
  request: MessageInitShape<I>,
  options: { metadata?: Record<string, string | readonly string[]>; deadlineMs?: number } = {},
): Promise<{ response: MessageShape<O>; headers: grpc.Metadata; trailers: grpc.Metadata }> {
  const input = serializers(method.input);
  const output = serializers(method.output);
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(options.metadata ?? {})) {
    for (const value of typeof v === "string" ? [v] : v) metadata.add(k, value);
  }
  return new Promise((resolve, reject) => {
    let headers = new grpc.Metadata();
    let trailers = new grpc.Metadata();
    const call = client.makeUnaryRequest(
      `/${method.parent.typeName}/${method.name}`,
      input.serialize,
      output.deserialize,
      create(method.input, request),
      metadata,
      options.deadlineMs ? { deadline: Date.now() + options.deadlineMs } : {},
      (error, response) =>
        error
          ? reject(decorate(error))
          : resolve({
              response: response as MessageShape<O>,
              headers,
              // grpc-js emits "status" (with the trailers) right after this callback.
              get trailers() {
                return trailers;
              },
            }),
    );
    call.on("metadata", (m) => (headers = m));
    call.on("status", (status) => (trailers = status.metadata));
  });
}

/** Opens a server stream; `messages` yields each response, errors decorated like unary ones. */
export function serverStream<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
  request: MessageInitShape<I>,
  options: { metadata?: Record<string, string> } = {},
): { messages: AsyncIterable<MessageShape<O>>; cancel(): void } {
  const input = serializers(method.input);
  const output = serializers(method.output);
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(options.metadata ?? {})) metadata.set(k, v);
  const call = client.makeServerStreamRequest(
    `/${method.parent.typeName}/${method.name}`,
    input.serialize,
    output.deserialize,
    create(method.input, request),
    metadata,
  );
  return {
    messages: (async function* () {
      try {
        for await (const message of call) yield message as MessageShape<O>;
      } catch (error) {
        throw decorate(error as grpc.ServiceError);
      }
    })(),
    cancel: () => call.cancel(),
  };
}

/** Sends `requests` on a bidi stream and collects one response per request. */
export async function bidiExchange<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
  requests: MessageInitShape<I>[],
): Promise<MessageShape<O>[]> {
  const input = serializers(method.input);
  const output = serializers(method.output);
  const call = client.makeBidiStreamRequest(
    `/${method.parent.typeName}/${method.name}`,
    input.serialize,
    output.deserialize,
  );
  const responses: MessageShape<O>[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on("data", (m: MessageShape<O>) => {
      responses.push(m);
      if (responses.length === requests.length) call.end();
    });
    // 'status' rather than 'end': grpc-js emits the readable end only once the stream is drained.
    call.on("status", (status: grpc.StatusObject) => (status.code === grpc.status.OK ? resolve() : undefined));
    call.on("error", reject);
  });
  for (const r of requests) call.write(create(method.input, r));
  await done;
  return responses;
}
