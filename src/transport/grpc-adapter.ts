/**
 * Mounts a `ServiceBinding` on `@grpc/grpc-js`: builds the grpc-js service definition from the
 * protobuf-es descriptor (`toBinary`/`fromBinary` as serializers) and calls the very same
 * implementation the Connect listener calls, through a `HandlerContext` made per call.
 * Errors become gRPC statuses with `grpc-status-details-bin` (google.rpc.Status), exactly as
 * connect-node sends them on its own gRPC protocol.
 */
import type { PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import { malformedRequest, RequestRefusal } from "./request-refusal.js";
import { flatDecoderFor } from "./flat-request-decoder.js";
import { fieldLimitError, wireCountViolations } from "./request-limits.js";
import { toConnectError } from "./error-mapping.js";
import { encodeMessage } from "./reusable-message.js";
import { principalFromCertificate } from "../auth/certificate-principal.js";
import type { CallHeaders, HeaderReader } from "./call.js";
import { callHeadersKey, certificatePrincipalKey, methodImpl, peerKey, type ServiceBinding } from "./service-binding.js";

type Message = ReturnType<typeof create>;

/**
 * A unary method's answer given in the turn the call arrives in (warm-token-path.ts): true when
 * it answered, false to leave the call to the binding's implementation, untouched.
 */
export type WarmGrpcUnary = (request: unknown, call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => boolean;

/** A binding as the gRPC listener mounts it: with warm paths for some unary methods, by local name. */
export interface GrpcServiceBinding extends ServiceBinding {
  readonly warmPaths?: Readonly<Record<string, WarmGrpcUnary>> | undefined;
}

function serializerFor(schema: DescMessage) {
  return (message: Message): Buffer => {
    const init = message as Parameters<typeof create>[1];
    const full = (message as { $typeName?: string }).$typeName === schema.typeName ? message : create(schema, init);
    const bytes = encodeMessage(full, () => toBinary(schema, full));
    // A view, not a copy: grpc-js copies the bytes into its frame.
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/**
 * A request that did not decode. grpc-js would answer a throwing deserializer with INTERNAL;
 * the bytes are the caller's fault, so the message becomes a refusal the interceptor chain
 * answers with INVALID_ARGUMENT, after authentication (request-edge.ts).
 */
function deserializerFor(schema: DescMessage) {
  const decodeFlat = flatDecoderFor(schema);
  return (bytes: Buffer): Message => {
    const flat = decodeFlat?.(bytes);
    if (flat !== undefined) return flat;
    try {
      const tooMany = wireCountViolations(schema, bytes);
      if (tooMany.length > 0) return new RequestRefusal(fieldLimitError(tooMany)) as unknown as Message;
      return fromBinary(schema, bytes);
    } catch {
      return new RequestRefusal(malformedRequest(schema.typeName)) as unknown as Message;
    }
  };
}

/** For request streams, which the chain does not see message by message. */
function assertWellFormed(message: unknown): void {
  if (message instanceof RequestRefusal) throw message.error;
}

/** The request metadata as the chain reads it: string values, several joined as `Headers` joins them. */
function metadataReader(metadata: grpc.Metadata): HeaderReader {
  return {
    get(name) {
      const values = metadata.get(name);
      if (values.length === 0) return null;
      const first = values[0];
      if (values.length === 1) return typeof first === "string" ? first : null;
      const strings = values.filter((value): value is string => typeof value === "string");
      return strings.length === 0 ? null : strings.join(", ");
    },
  };
}

function headersFromMetadata(metadata: grpc.Metadata): Headers {
  const headers = new Headers();
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (typeof value === "string") headers.append(key, value);
  }
  return headers;
}

function metadataFromHeaders(headers: Headers): grpc.Metadata {
  const metadata = new grpc.Metadata();
  headers.forEach((value, key) => metadata.add(key, value));
  return metadata;
}

function timeoutOf(deadline: grpc.Deadline): number | undefined {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) && at > 0 ? Math.max(0, at - Date.now()) : undefined;
}

/** The gRPC status for a failure, with rich details in `grpc-status-details-bin`. */
export function toGrpcStatus(error: unknown, trailers?: grpc.Metadata): Partial<grpc.StatusObject> {
  const failure = toConnectError(error);
  const metadata = trailers ?? new grpc.Metadata();
  const details = failure.details.flatMap((detail) =>
    "desc" in detail ? [anyPack(detail.desc, create(detail.desc, detail.value))] : [],
  );
  if (details.length > 0) {
    const status = create(StatusSchema, { code: failure.code, message: failure.rawMessage, details });
    metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, status)));
  }
  return { code: failure.code as number as grpc.status, details: failure.rawMessage, metadata };
}

interface AnyServerCall {
  metadata: grpc.Metadata;
  readonly cancelled: boolean;
  getAuthContext(): { sslPeerCertificate?: PeerCertificate | undefined };
  getPeer(): string;
  getDeadline(): grpc.Deadline;
  getPath(): string;
  sendMetadata(metadata: grpc.Metadata): void;
  on(event: "cancelled", listener: () => void): unknown;
}

/** What a signal taken from a call reports once the call has been answered or has failed. */
const CALL_ENDED = new ConnectError("the call has ended", Code.Canceled);

/** A `HandlerContext` whose call can be ended: its signal (if anyone took it) aborts then. */
interface GrpcHandlerContext extends HandlerContext {
  end(): void;
  /** The response metadata: what the chain set, plus whatever a handler put in `responseHeader`. */
  responseMetadata(): grpc.Metadata;
  /** The trailers a handler put in `responseTrailer`, if it touched them. */
  trailerMetadata(): grpc.Metadata;
}

/**
 * The handler context of one grpc-js call. Unlike connect's `createHandlerContext`, the abort
 * signal is made only when someone asks for it: a warm GetAccessToken never does, and an
 * AbortController per call, aborted at its end, was a measurable part of that path
 * (bench/warm-path.ts). It aborts when the caller cancels, when the deadline passes (grpc-js
 * cancels the call then too) and when the call ends.
 */
function createGrpcHandlerContext(binding: ServiceBinding, method: DescMethod, call: AnyServerCall): GrpcHandlerContext {
  const timeoutMs = timeoutOf(call.getDeadline());
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  let controller: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  // The reasons are made only when a signal is there to abort: grpc-js emits "cancelled" as
  // every call's stream closes, and an error (with its stack) per call is not free.
  const abort = (reason: () => ConnectError) => {
    clearTimeout(timer);
    if (controller !== undefined && !controller.signal.aborted) controller.abort(reason());
  };
  const cancelled = () => new ConnectError("the caller cancelled the call", Code.Canceled);
  const expired = () => new ConnectError("the operation timed out", Code.DeadlineExceeded);
  call.on("cancelled", () => abort(cancelled));
  // fetch `Headers` are slow to build and fill; they are made only for a handler that asks, and
  // the chain reads and writes the metadata itself (call.ts, CallHeaders).
  let requestHeader: Headers | undefined;
  let responseHeader: Headers | undefined;
  let responseTrailer: Headers | undefined;
  const responseMetadata = new grpc.Metadata();
  const headers: CallHeaders = {
    request: metadataReader(call.metadata),
    response: { set: (name, value) => responseMetadata.set(name, value) },
  };
  return {
    service: binding.service,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: call.getPath(),
    timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
    get requestHeader() {
      return (requestHeader ??= headersFromMetadata(call.metadata));
    },
    get responseHeader() {
      return (responseHeader ??= new Headers());
    },
    get responseTrailer() {
      return (responseTrailer ??= new Headers());
    },
    responseMetadata() {
      responseHeader?.forEach((value, key) => responseMetadata.add(key, value));
      responseHeader = undefined;
      return responseMetadata;
    },
    trailerMetadata() {
      return responseTrailer === undefined ? new grpc.Metadata() : metadataFromHeaders(responseTrailer);
    },
    values: createContextValues()
      .set(peerKey, call.getPeer())
      .set(callHeadersKey, headers)
      // grpc-js only reports a certificate the TLS layer verified against the client CA.
      .set(certificatePrincipalKey, principalFromCertificate(call.getAuthContext().sslPeerCertificate)),
    get signal() {
      if (controller === undefined) {
        controller = new AbortController();
        const left = deadline === undefined ? undefined : deadline - Date.now();
        if (ended) controller.abort(CALL_ENDED);
        else if (call.cancelled) controller.abort(cancelled());
        else if (left !== undefined && left <= 0) controller.abort(expired());
        else if (left !== undefined) timer = setTimeout(() => abort(expired), left);
      }
      return controller.signal;
    },
    end() {
      ended = true;
      abort(() => CALL_ENDED);
    },
  };
}

function contextFor(binding: ServiceBinding, method: DescMethod, call: AnyServerCall) {
  const ctx = createGrpcHandlerContext(binding, method, call);
  let headersSent = false;
  const sendHeaders = () => {
    if (headersSent) return;
    headersSent = true;
    call.sendMetadata(ctx.responseMetadata());
  };
  return { ctx, sendHeaders };
}

/**
 * The request messages of a client or bidi stream. `destroyOnReturn: false`: a plain `for await`
 * destroys the duplex when the requests end, which would cancel the call before its responses
 * and status are sent.
 */
async function* readStream(call: grpc.ServerDuplexStream<Message, Message>): AsyncGenerator<Message> {
  for await (const message of call.iterator({ destroyOnReturn: false }) as AsyncIterable<Message>) {
    assertWellFormed(message);
    yield message;
  }
}

/** A grpc-js service definition and implementation for `binding`. */
export function toGrpcService(binding: GrpcServiceBinding): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
} {
  const definition: Record<string, grpc.MethodDefinition<Message, Message>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of binding.service.methods) {
    const impl = methodImpl(binding, method);
    const warm = binding.warmPaths?.[method.localName];
    const stream = method.methodKind !== "unary";
    definition[method.localName] = {
      path: `/${binding.service.typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializerFor(method.input),
      requestDeserialize: deserializerFor(method.input),
      responseSerialize: serializerFor(method.output),
      responseDeserialize: deserializerFor(method.output),
      originalName: method.localName,
    };
    if (!stream) {
      implementation[method.localName] = ((
        call: grpc.ServerUnaryCall<Message, Message>,
        callback: grpc.sendUnaryData<Message>,
      ) => {
        if (warm?.(call.request, call, callback) === true) return;
        const { ctx, sendHeaders } = contextFor(binding, method, call);
        let response: Promise<Message>;
        try {
          response = impl(call.request, ctx) as Promise<Message>;
        } catch (error) {
          response = Promise.reject(error);
        }
        response.then(
          (message) => {
            sendHeaders();
            callback(null, message, ctx.trailerMetadata());
            ctx.end();
          },
          (error: unknown) => {
            sendHeaders();
            callback(toGrpcStatus(error, ctx.trailerMetadata()));
            ctx.end();
          },
        );
      }) as grpc.handleUnaryCall<Message, Message>;
    } else if (method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming") {
      implementation[method.localName] = ((call: grpc.ServerDuplexStream<Message, Message>) => {
        const { ctx, sendHeaders } = contextFor(binding, method, call);
        const input = method.methodKind === "bidi_streaming" ? readStream(call) : (call as unknown as { request: Message }).request;
        void (async () => {
          try {
            for await (const response of impl(input, ctx) as AsyncIterable<Message>) {
              sendHeaders();
              if (!call.write(response)) await new Promise((resolve) => call.once("drain", resolve));
              if (call.cancelled) return;
            }
            sendHeaders();
            call.end(ctx.trailerMetadata());
          } catch (error) {
            sendHeaders();
            if (!call.cancelled) call.emit("error", toGrpcStatus(error, ctx.trailerMetadata()));
          } finally {
            ctx.end();
          }
        })();
      }) as grpc.handleBidiStreamingCall<Message, Message>;
    } else {
      implementation[method.localName] = ((
        call: grpc.ServerReadableStream<Message, Message>,
        callback: grpc.sendUnaryData<Message>,
      ) => {
        const { ctx, sendHeaders } = contextFor(binding, method, call);
        Promise.resolve()
          .then(() => impl(readStream(call as unknown as grpc.ServerDuplexStream<Message, Message>), ctx) as Promise<Message>)
          .then(
            (response) => {
              sendHeaders();
              callback(null, response, ctx.trailerMetadata());
            },
            (error: unknown) => callback(toGrpcStatus(error, ctx.trailerMetadata())),
          )
          .finally(() => ctx.end());
      }) as grpc.handleClientStreamingCall<Message, Message>;
    }
  }
  return { definition: definition as grpc.ServiceDefinition, implementation };
}
