/**
 * The HTTP listener's read of a request body, before connect-node sees it, for every protocol
 * on that port (Connect unary and streaming, binary and JSON, GET; gRPC-Web; gRPC over h2c).
 * connect-node reads and inflates the whole body before any interceptor runs, and answers an
 * undecodable binary message with INTERNAL and the parser's text. Here:
 * - a caller the admission check refused has no byte of its body read (a stand-in message
 *   goes on, and the authentication interceptor answers UNAUTHENTICATED);
 * - the body is read up to `maxRequestBytes` and inflated with zlib's `maxOutputLength` set to
 *   the same bound, so a bomb stops after that many bytes;
 * - the message is decoded and held to the field limits once; what fails is refused
 *   (MALFORMED_REQUEST, FIELD_LIMIT_EXCEEDED).
 * Connect then parses the plain (inflated) bytes handed on; a refusal rides along in the context
 * values for the interceptor chain to answer (request-edge.ts).
 */
import type { Readable } from "node:stream";
import { promisify } from "node:util";
import { brotliDecompress, gunzip, inflate, type ZlibOptions } from "node:zlib";
import { fromBinary, fromJsonString, type DescMessage, type Message } from "@bufbuild/protobuf";
import { base64Decode, base64Encode } from "@bufbuild/protobuf/wire";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import { UNREAD_BODY } from "./admission.js";
import { malformedRequest, requestTooLarge, RequestRefusal } from "./request-refusal.js";
import { fieldLimitError, requestLimitViolations, wireCountViolations } from "./request-limits.js";

interface BodyFormat {
  /** A Connect unary body is the bare message; every other protocol frames it in one envelope. */
  readonly enveloped: boolean;
  readonly binary: boolean;
  /** The header naming the body's compression. */
  readonly encodingHeader: string;
}

/** The body format a content type announces; undefined: not an RPC body connect would accept (it answers 415). */
export function bodyFormatOf(contentType: string | null): BodyFormat | undefined {
  const match = /^application\/(?:(proto|json)|connect\+(proto|json)|grpc-web(?:\+(proto|json))?|grpc(?:\+(proto|json))?)\s*(?:;|$)/i.exec(
    contentType ?? "",
  );
  if (!match) return undefined;
  const [, unary, connectStream, grpcWeb, grpc] = match;
  if (unary !== undefined) return { enveloped: false, binary: unary.toLowerCase() === "proto", encodingHeader: "content-encoding" };
  if (connectStream !== undefined) {
    return { enveloped: true, binary: connectStream.toLowerCase() === "proto", encodingHeader: "connect-content-encoding" };
  }
  const codec = grpcWeb ?? grpc;
  return { enveloped: true, binary: codec === undefined || codec.toLowerCase() === "proto", encodingHeader: "grpc-encoding" };
}

type Inflate = (bytes: Uint8Array, options: ZlibOptions) => Promise<Buffer>;
const INFLATERS: Readonly<Record<string, Inflate>> = {
  gzip: promisify(gunzip) as Inflate,
  deflate: promisify(inflate) as Inflate,
  br: promisify(brotliDecompress) as unknown as Inflate,
};

class TooLarge extends Error {}
class Undecodable extends Error {}

async function inflateBounded(bytes: Uint8Array, encoding: string, maxBytes: number): Promise<Uint8Array> {
  const inflater = INFLATERS[encoding];
  if (inflater === undefined) throw new Undecodable(`unknown encoding`);
  try {
    return await inflater(bytes, { maxOutputLength: maxBytes });
  } catch (error) {
    if ((error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") throw new TooLarge();
    throw new Undecodable("not inflatable");
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Decodes the message and holds it to the field limits here, once: a request over them (10,000
 * scopes) is refused without connect parsing it a second time.
 */
function checkMessage(schema: DescMessage, bytes: Uint8Array, binary: boolean): RequestRefusal | undefined {
  let message: Message;
  try {
    const tooMany = binary ? wireCountViolations(schema, bytes) : [];
    if (tooMany.length > 0) return new RequestRefusal(fieldLimitError(tooMany));
    message = binary ? fromBinary(schema, bytes) : fromJsonString(schema, utf8.decode(bytes), { ignoreUnknownFields: true });
  } catch {
    throw new Undecodable("not the message");
  }
  const violations = requestLimitViolations(schema, message);
  return violations.length === 0 ? undefined : new RequestRefusal(fieldLimitError(violations));
}

/** The one message of an envelope-framed body: flags 0 (plain) or 1 (compressed), and nothing after it. */
function unframe(body: Uint8Array): { compressed: boolean; payload: Uint8Array } {
  if (body.byteLength < 5) throw new Undecodable("short envelope");
  const flags = body[0] ?? 0;
  const length = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1);
  if ((flags & ~1) !== 0 || body.byteLength !== 5 + length) throw new Undecodable("not one envelope");
  return { compressed: (flags & 1) === 1, payload: body.subarray(5) };
}

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.byteLength);
  new DataView(out.buffer).setUint32(1, payload.byteLength);
  out.set(payload, 5);
  return out;
}

/** An empty message in the body's format: what a handler gets when the body was refused. */
function standInMessage(binary: boolean): Uint8Array {
  return binary ? new Uint8Array(0) : new TextEncoder().encode("{}");
}

/**
 * Takes what is left of a refused body and drops it. An HTTP/2 answer is only complete once
 * the request side has ended too, so the rest must flow; nothing of it is kept or inflated.
 */
function discard(body: Readable): void {
  body.on("data", () => undefined);
  body.resume();
}

/** Reads at most `maxBytes` of `body`; undefined as soon as there is more (the rest is discarded). */
export function readBounded(body: Readable, maxBytes: number, declaredLength: string | null): Promise<Uint8Array | undefined> {
  if (declaredLength !== null && Number(declaredLength) > maxBytes) {
    discard(body);
    return Promise.resolve(undefined);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer) => {
      total += chunk.byteLength;
      if (total <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      body.off("data", onData).off("end", onEnd).off("error", reject);
      chunks.length = 0;
      discard(body);
      resolve(undefined);
    };
    const onEnd = () => {
      body.off("error", reject);
      resolve(Buffer.concat(chunks, total));
    };
    body.on("data", onData).once("end", onEnd).once("error", reject);
  });
}

export interface PreparedRequest {
  readonly request: UniversalServerRequest;
  readonly refusal: RequestRefusal | undefined;
  /** The body was refused unread or part-read: an HTTP/1.1 connection should close after the answer. */
  readonly leftUnread: boolean;
}

/**
 * The request connect-node is handed for a unary or server-streaming method: the body read,
 * bounded and inflated here, or a stand-in and the refusal.
 */
export async function prepareRequest(
  request: UniversalServerRequest,
  nodeBody: Readable,
  schema: DescMessage,
  admitted: boolean,
  maxRequestBytes: number,
): Promise<PreparedRequest> {
  if (request.method === "GET") return prepareGet(request, schema, admitted, maxRequestBytes);
  const format = bodyFormatOf(request.header.get("content-type"));
  if (format === undefined) return { request, refusal: undefined, leftUnread: false };
  const header = new Headers(request.header);
  const encoding = header.get(format.encodingHeader);
  const known = encoding === null || encoding === "identity" || INFLATERS[encoding] !== undefined;
  const replaced = (message: Uint8Array, refusal: RequestRefusal | undefined, leftUnread: boolean): PreparedRequest => {
    // An unknown encoding stays named: connect answers it with its own UNIMPLEMENTED.
    if (known) header.delete(format.encodingHeader);
    const body = format.enveloped ? frame(message) : message;
    if (format.enveloped) header.delete("content-length");
    else header.set("content-length", String(body.byteLength));
    return { request: { ...request, header, body: oneChunk(body) }, refusal, leftUnread };
  };
  if (!admitted || !known) {
    discard(nodeBody);
    return replaced(standInMessage(format.binary), admitted ? undefined : UNREAD_BODY, true);
  }
  const envelopeBytes = format.enveloped ? 5 : 0;
  const body = await readBounded(nodeBody, maxRequestBytes + envelopeBytes, header.get("content-length"));
  if (body === undefined) return replaced(standInMessage(format.binary), new RequestRefusal(requestTooLarge(maxRequestBytes)), true);
  try {
    let message = body;
    let compressed = encoding !== null && encoding !== "identity";
    if (format.enveloped) {
      const unframed = unframe(body);
      message = unframed.payload;
      compressed = unframed.compressed;
      if (compressed && (encoding === null || encoding === "identity")) throw new Undecodable("compressed without an encoding");
    }
    if (compressed && encoding !== null) message = await inflateBounded(message, encoding, maxRequestBytes);
    const overLimits = checkMessage(schema, message, format.binary);
    return overLimits ? replaced(standInMessage(format.binary), overLimits, false) : replaced(message, undefined, false);
  } catch (error) {
    const refusal = error instanceof TooLarge ? requestTooLarge(maxRequestBytes) : malformedRequest(schema.typeName);
    return replaced(standInMessage(format.binary), new RequestRefusal(refusal), false);
  }
}

/** Connect GET: the message is in the query (`message`, `base64`, `compression`, `encoding`). */
async function prepareGet(request: UniversalServerRequest, schema: DescMessage, admitted: boolean, maxRequestBytes: number): Promise<PreparedRequest> {
  const url = new URL(request.url);
  const query = url.searchParams;
  const binary = query.get("encoding") !== "json";
  const compression = query.get("compression");
  const known = compression === null || compression === "identity" || INFLATERS[compression] !== undefined;
  const replaced = (message: Uint8Array, refusal: RequestRefusal | undefined): PreparedRequest => {
    if (known) query.delete("compression");
    if (binary) {
      query.set("base64", "1");
      query.set("message", base64Encode(message, "url"));
    } else {
      query.delete("base64");
      query.set("message", new TextDecoder().decode(message));
    }
    return { request: { ...request, url: url.toString() }, refusal, leftUnread: false };
  };
  if (!admitted || !known) return replaced(standInMessage(binary), admitted ? undefined : UNREAD_BODY);
  try {
    const raw = query.get("message") ?? "";
    let message: Uint8Array = query.get("base64") === "1" ? base64Decode(raw) : new TextEncoder().encode(raw);
    if (compression !== null && compression !== "identity") message = await inflateBounded(message, compression, maxRequestBytes);
    const overLimits = checkMessage(schema, message, binary);
    return overLimits ? replaced(standInMessage(binary), overLimits) : replaced(message, undefined);
  } catch (error) {
    const refusal = error instanceof TooLarge ? requestTooLarge(maxRequestBytes) : malformedRequest(schema.typeName);
    return replaced(standInMessage(binary), new RequestRefusal(refusal));
  }
}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
