/**
 * One RPC sent as raw bytes over any protocol either listener speaks, and its answer read back
 * whatever it is: what an attacker's hand-made request looks like, which no generated client
 * would send. The status is taken from where each protocol puts it (Connect: the HTTP status
 * and JSON body; gRPC-Web: headers or the trailer frame; gRPC: trailers), and `answerBytes`
 * counts everything the broker sent back: headers, body and trailers.
 */
import { request as http1Request } from "node:http";
import { connect as http2Connect, type IncomingHttpHeaders } from "node:http2";
import { gzipSync } from "node:zlib";
import { Code } from "@connectrpc/connect";

export type Protocol = "connect-proto" | "connect-json" | "grpc-web" | "http-grpc" | "grpc";

/** Every protocol of both listeners: `grpc` is the gRPC listener, the rest are the HTTP listener. */
export const PROTOCOLS: readonly Protocol[] = ["connect-proto", "connect-json", "grpc-web", "http-grpc", "grpc"];

export interface RawAnswer {
  readonly code: Code | 0;
  readonly message: string;
  readonly answerBytes: number;
  readonly body: Buffer;
}

export interface Target {
  readonly httpPort: number;
  readonly grpcPort: number;
}

const CONNECT_CODES: Record<string, Code> = {
  canceled: Code.Canceled,
  unknown: Code.Unknown,
  invalid_argument: Code.InvalidArgument,
  deadline_exceeded: Code.DeadlineExceeded,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  permission_denied: Code.PermissionDenied,
  resource_exhausted: Code.ResourceExhausted,
  failed_precondition: Code.FailedPrecondition,
  aborted: Code.Aborted,
  out_of_range: Code.OutOfRange,
  unimplemented: Code.Unimplemented,
  internal: Code.Internal,
  unavailable: Code.Unavailable,
  data_loss: Code.DataLoss,
  unauthenticated: Code.Unauthenticated,
};

/** The bytes as a Buffer without a copy: attacks send tens of megabytes. */
function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function envelope(payload: Uint8Array, compressed = false): Buffer {
  const head = Buffer.alloc(5);
  head[0] = compressed ? 1 : 0;
  head.writeUInt32BE(payload.byteLength, 1);
  return Buffer.concat([head, payload]);
}

function headerBytes(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): number {
  let total = 0;
  for (const [key, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value ?? ""]) total += key.length + String(v).length + 4;
  }
  return total;
}

/**
 * Sends `message` (already encoded in the protocol's format: binary, or JSON text for
 * connect-json) to `/service/method`. `gzip`: compress it the protocol's way; `rawBody`:
 * send these bytes as they are instead (already framed or compressed by the caller).
 */
export async function sendRaw(
  target: Target,
  protocol: Protocol,
  path: string,
  options: { message?: Uint8Array; rawBody?: Uint8Array; gzip?: boolean; authorization?: string; headers?: Record<string, string> },
): Promise<RawAnswer> {
  const message = options.message ?? new Uint8Array(0);
  const headers: Record<string, string> = { ...(options.authorization ? { authorization: options.authorization } : {}) };
  let body: Uint8Array;
  if (protocol === "connect-proto" || protocol === "connect-json") {
    headers["content-type"] = protocol === "connect-proto" ? "application/proto" : "application/json";
    headers["connect-protocol-version"] = "1";
    body = options.rawBody ?? (options.gzip ? gzipSync(message) : message);
    if (options.gzip) headers["content-encoding"] = "gzip";
  } else {
    headers["content-type"] = protocol === "grpc-web" ? "application/grpc-web+proto" : "application/grpc";
    if (protocol !== "grpc-web") headers["te"] = "trailers";
    body = options.rawBody ?? (options.gzip ? envelope(gzipSync(message), true) : envelope(message));
    if (options.gzip) headers["grpc-encoding"] = "gzip";
  }
  Object.assign(headers, options.headers ?? {});
  if (protocol === "http-grpc" || protocol === "grpc") {
    return h2Call(protocol === "grpc" ? target.grpcPort : target.httpPort, path, headers, body);
  }
  return http1Call(target.httpPort, path, headers, body, protocol);
}

function http1Call(port: number, path: string, headers: Record<string, string>, body: Uint8Array, protocol: Protocol): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = http1Request({ host: "127.0.0.1", port, path, method: "POST", headers: { ...headers, "content-length": String(body.byteLength) } });
    let answered = false;
    // A server that answers before reading everything closes the connection: the answer counts.
    req.on("error", (error) => {
      if (!answered) reject(error);
    });
    req.on("response", (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        const payload = Buffer.concat(chunks);
        const answerBytes = headerBytes(res.headers) + payload.byteLength;
        if (protocol === "grpc-web") {
          resolve({ ...grpcWebStatus(res.headers, payload), answerBytes, body: payload });
          return;
        }
        if (res.statusCode === 200) {
          resolve({ code: 0, message: "", answerBytes, body: payload });
          return;
        }
        const parsed = parseJson(payload);
        resolve({ code: CONNECT_CODES[parsed.code ?? ""] ?? Code.Unknown, message: parsed.message ?? "", answerBytes, body: payload });
      });
    });
    req.end(view(body));
  });
}

function parseJson(payload: Buffer): { code?: string; message?: string } {
  try {
    return JSON.parse(payload.toString("utf8")) as { code?: string; message?: string };
  } catch {
    return {};
  }
}

function grpcWebStatus(headers: IncomingHttpHeaders, payload: Buffer): { code: Code | 0; message: string } {
  if (headers["grpc-status"] !== undefined) {
    return { code: Number(headers["grpc-status"]) as Code, message: decodeURIComponent(String(headers["grpc-message"] ?? "")) };
  }
  let offset = 0;
  while (offset + 5 <= payload.byteLength) {
    const flags = payload[offset] ?? 0;
    const length = payload.readUInt32BE(offset + 1);
    const frame = payload.subarray(offset + 5, offset + 5 + length);
    if ((flags & 0x80) !== 0) {
      const fields = new Map(
        frame
          .toString("utf8")
          .split("\r\n")
          .filter(Boolean)
          .map((line) => [line.slice(0, line.indexOf(":")).trim().toLowerCase(), line.slice(line.indexOf(":") + 1).trim()] as const),
      );
      return { code: Number(fields.get("grpc-status") ?? 2) as Code, message: decodeURIComponent(fields.get("grpc-message") ?? "") };
    }
    offset += 5 + length;
  }
  return { code: Code.Unknown, message: "no status" };
}

function h2Call(port: number, path: string, headers: Record<string, string>, body: Uint8Array): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    let responseHeaders: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (responseHeaders = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    // The server may answer and reset the stream before taking the whole body.
    stream.on("error", () => undefined);
    stream.on("close", () => {
      session.close();
      const payload = Buffer.concat(chunks);
      const status = trailers["grpc-status"] ?? responseHeaders["grpc-status"];
      const message = String(trailers["grpc-message"] ?? responseHeaders["grpc-message"] ?? "");
      resolve({
        code: status === undefined ? Code.Unknown : (Number(status) as Code),
        message: decodeURIComponent(message),
        answerBytes: headerBytes(responseHeaders) + headerBytes(trailers) + payload.byteLength,
        body: payload,
      });
    });
    stream.end(view(body));
  });
}
