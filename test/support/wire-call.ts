/**
 * One RPC made the way each kind of client makes it: a `@grpc/grpc-js` client on the gRPC
 * listener, and a Connect client on the HTTP listener. A refusal comes back in one shape
 * whichever the wire (status, `ErrorInfo`, `RetryInfo`), so a test can demand that both
 * listeners refuse a call alike.
 */
import { Metadata } from "@grpc/grpc-js";
import { fromBinary, type DescMessage, type DescMethodServerStreaming, type DescMethodUnary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema, RetryInfoSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { decorate, grpcClient, serverStream, unary, type GrpcFailure } from "./grpc-client.js";
import type { Target } from "./raw-rpc.js";

export type Wire = "grpc" | "connect";
export const WIRES: readonly Wire[] = ["grpc", "connect"];

export interface WireRefusal {
  readonly code: Code;
  readonly message: string;
  readonly reason: string | undefined;
  readonly domain: string | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  readonly retryDelayMs: number | undefined;
}

/** What a call that should have been refused did instead, or a refusal without a status. */
export class NotRefused extends Error {}

export interface CallOptions {
  /** The whole `authorization` header value (`Bearer …`); none when absent. */
  readonly authorization?: string | undefined;
  readonly deadlineMs?: number | undefined;
  /**
   * A deadline only the broker is told of (`grpc-timeout`, `connect-timeout-ms`): the client
   * waits for the broker's answer to it rather than giving up itself at the same instant.
   */
  readonly serverDeadlineMs?: number | undefined;
}

export interface WireCaller {
  readonly wire: Wire;
  unary<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, request: MessageInitShape<I>, options?: CallOptions): Promise<MessageShape<O>>;
  /** Opens a server stream and reads it until its first message (returned) or its end. */
  firstOfStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    request: MessageInitShape<I>,
    options?: CallOptions,
  ): Promise<MessageShape<O> | undefined>;
  /** Sends `body` as the encoded request message of `/service/method`, whatever it holds. */
  rawUnary(path: string, body: Uint8Array, options?: CallOptions): Promise<Uint8Array>;
  close(): void;
}

class Refused extends Error {
  constructor(readonly refusal: WireRefusal) {
    super(`refused with ${Code[refusal.code]} ${refusal.reason ?? "(no reason)"}: ${refusal.message}`);
  }
}

function fromGrpc(error: unknown): Refused {
  const failure = error as GrpcFailure;
  if (typeof failure.code !== "number") throw error;
  return new Refused({
    code: failure.code as number as Code,
    message: failure.details,
    reason: failure.errorInfo?.reason,
    domain: failure.errorInfo?.domain,
    metadata: { ...(failure.errorInfo?.metadata ?? {}) },
    retryDelayMs: failure.retryDelayMs,
  });
}

function fromConnect(error: unknown): Refused {
  if (!(error instanceof ConnectError)) throw error;
  const [info] = error.findDetails(ErrorInfoSchema);
  const [retry] = error.findDetails(RetryInfoSchema);
  const delay = retry?.retryDelay;
  return new Refused({
    code: error.code,
    message: error.rawMessage,
    reason: info?.reason,
    domain: info?.domain,
    metadata: { ...(info?.metadata ?? {}) },
    retryDelayMs: delay === undefined ? undefined : Number(delay.seconds) * 1000 + delay.nanos / 1e6,
  });
}

function grpcMetadata(options: CallOptions): Record<string, string> {
  return {
    ...(options.authorization === undefined ? {} : { authorization: options.authorization }),
    ...(options.serverDeadlineMs === undefined ? {} : { "grpc-timeout": `${options.serverDeadlineMs}m` }),
  };
}

function grpcCaller(target: Target): WireCaller {
  const client = grpcClient(`127.0.0.1:${target.grpcPort}`);
  return {
    wire: "grpc",
    async unary(method, request, options = {}) {
      try {
        const { response } = await unary(client, method, request, { metadata: grpcMetadata(options), ...(options.deadlineMs ? { deadlineMs: options.deadlineMs } : {}) });
        return response;
      } catch (error) {
        throw fromGrpc(error);
      }
    },
    async firstOfStream(method, request, options = {}) {
      const stream = serverStream(client, method, request, { metadata: grpcMetadata(options) });
      try {
        for await (const message of stream.messages) {
          stream.cancel();
          return message;
        }
        return undefined;
      } catch (error) {
        throw fromGrpc(error);
      }
    },
    rawUnary(path, body, options = {}) {
      const metadata = new Metadata();
      for (const [key, value] of Object.entries(grpcMetadata(options))) metadata.set(key, value);
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(path, (bytes: Uint8Array) => Buffer.from(bytes), (bytes: Buffer) => new Uint8Array(bytes), body, metadata, (error, answer) =>
          error ? reject(fromGrpc(decorate(error))) : resolve(answer ?? new Uint8Array(0)),
        );
      });
    },
    close: () => client.close(),
  };
}

function connectCaller(target: Target): WireCaller {
  const transport: Transport = createConnectTransport({ baseUrl: `http://127.0.0.1:${target.httpPort}`, httpVersion: "1.1" });
  const headers = (options: CallOptions): Record<string, string> => ({
    ...(options.authorization === undefined ? {} : { authorization: options.authorization }),
    ...(options.serverDeadlineMs === undefined ? {} : { "connect-timeout-ms": String(options.serverDeadlineMs) }),
  });
  return {
    wire: "connect",
    async unary(method, request, options = {}) {
      try {
        return (await transport.unary(method, undefined, options.deadlineMs, headers(options), request)).message;
      } catch (error) {
        throw fromConnect(ConnectError.from(error));
      }
    },
    async firstOfStream(method, request, options = {}) {
      const abort = new AbortController();
      try {
        const response = await transport.stream(method, abort.signal, options.deadlineMs, headers(options), (async function* () {
          yield request;
        })());
        for await (const message of response.message) {
          abort.abort();
          return message;
        }
        return undefined;
      } catch (error) {
        throw fromConnect(ConnectError.from(error));
      }
    },
    async rawUnary(path, body, options = {}) {
      const response = await fetch(`http://127.0.0.1:${target.httpPort}${path}`, {
        method: "POST",
        headers: { "content-type": "application/proto", "connect-protocol-version": "1", ...headers(options) },
        body,
      });
      const answer = new Uint8Array(await response.arrayBuffer());
      if (response.ok) return answer;
      throw fromConnectJson(answer, response.status);
    },
    close: () => undefined,
  };
}

/** A Connect error body (`{code, message, details: [{type, value}]}`) as the refusal it describes. */
function fromConnectJson(body: Uint8Array, httpStatus: number): Refused {
  let parsed: { code?: string; message?: string; details?: Array<{ type?: string; value?: string }> };
  try {
    parsed = JSON.parse(Buffer.from(body).toString("utf8")) as typeof parsed;
  } catch {
    parsed = { message: `HTTP ${httpStatus} without a Connect error body` };
  }
  const detail = (type: string) => parsed.details?.find((d) => d.type === type)?.value;
  const info = detail("google.rpc.ErrorInfo");
  const retry = detail("google.rpc.RetryInfo");
  const errorInfo = info === undefined ? undefined : fromBinary(ErrorInfoSchema, Buffer.from(info, "base64"));
  const delay = retry === undefined ? undefined : fromBinary(RetryInfoSchema, Buffer.from(retry, "base64")).retryDelay;
  const code = Object.entries(Code).find(([name]) => name.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase() === parsed.code)?.[1];
  return new Refused({
    code: typeof code === "number" ? code : Code.Unknown,
    message: parsed.message ?? "",
    reason: errorInfo?.reason,
    domain: errorInfo?.domain,
    metadata: { ...(errorInfo?.metadata ?? {}) },
    retryDelayMs: delay === undefined ? undefined : Number(delay.seconds) * 1000 + delay.nanos / 1e6,
  });
}

export function wireCallers(target: Target): Record<Wire, WireCaller> {
  return { grpc: grpcCaller(target), connect: connectCaller(target) };
}

/** The refusal `call` ends with; throws `NotRefused` when it succeeds instead. */
export async function refusalOf(call: Promise<unknown>): Promise<WireRefusal> {
  let answer: unknown;
  try {
    answer = await call;
  } catch (error) {
    if (error instanceof Refused) return error.refusal;
    throw error;
  }
  throw new NotRefused(`the call was answered instead of refused: ${JSON.stringify(answer, (_key, value: unknown) => (typeof value === "bigint" ? String(value) : value))}`);
}
