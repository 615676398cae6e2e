/**
 * The HTTP listener (`BROKER_HTTP_ADDR`): Connect, gRPC-Web and gRPC for every service through
 * `@connectrpc/connect-node`, plus plain HTTP routes (OAuth callback, health probes, metrics,
 * the web page). HTTP/1.1 and h2c share the port: Node's `http2.createServer({allowHTTP1})`
 * only falls back to HTTP/1.1 under TLS, so the first bytes of each connection decide — the
 * HTTP/2 preface starts with "PRI".
 */
import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from "node:http";
import {
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type ServerHttp2Session,
} from "node:http2";
import { createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { Code, ConnectError, createConnectRouter, createContextValues } from "@connectrpc/connect";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import type { ListenAddress } from "../config/types.js";
import { DEFAULT_MAX_REQUEST_BYTES } from "../config/limits.js";
import type { Admission } from "./admission.js";
import { prepareRequest } from "./http-request-body.js";
import { peerKey, requestRefusalKey, type ServiceBinding } from "./service-binding.js";

export type HttpRequest = IncomingMessage | Http2ServerRequest;
export type HttpResponse = ServerResponse | Http2ServerResponse;

/** A plain HTTP route; returns false to pass the request on. */
export type HttpRoute = (req: HttpRequest, res: HttpResponse, url: URL) => boolean | Promise<boolean>;

export interface HttpListener {
  readonly port: number;
  close(graceMs: number): Promise<void>;
}

/** 413 for a plain route's body declared over the limit, before any route reads it. */
function refuseLargeBody(req: HttpRequest, res: HttpResponse, maxRequestBytes: number): void {
  res.statusCode = 413;
  res.setHeader("content-type", "text/plain; charset=utf-8");
  if (!("stream" in req)) res.setHeader("connection", "close");
  res.end(`request body larger than ${maxRequestBytes} bytes (limits.maxRequestBytes)\n`);
}

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function peerOf(req: HttpRequest): string {
  const socket = req.socket;
  return socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort ?? 0}` : "unknown";
}

export async function startHttpListener(options: {
  address: ListenAddress;
  bindings: readonly ServiceBinding[];
  routes: readonly HttpRoute[];
  onRouteError: (error: unknown, req: HttpRequest) => void;
  /** `limits.maxRequestBytes`: every body on this port, as sent and once inflated. */
  maxRequestBytes?: number | undefined;
  /** Checked from the headers before an RPC's body is read; absent: every body is read. */
  admission?: Admission | undefined;
}): Promise<HttpListener> {
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const router = createConnectRouter({
    readMaxBytes: maxRequestBytes,
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  for (const binding of options.bindings) router.service(binding.service, binding.impl);
  const rpcs = new Map<string, UniversalHandler>(router.handlers.map((handler) => [handler.requestPath, handler]));

  const serveRpc = async (rpc: UniversalHandler, req: HttpRequest, res: HttpResponse) => {
    const contextValues = createContextValues().set(peerKey, peerOf(req));
    const request = universalRequestFromNodeRequest(req, res, undefined, contextValues);
    const streamsRequests = rpc.method.methodKind === "client_streaming" || rpc.method.methodKind === "bidi_streaming";
    let handed = request;
    if (!streamsRequests) {
      const authorization = request.header.get("authorization");
      const admitted = options.admission === undefined || (await options.admission(rpc.service.typeName, authorization, false));
      const prepared = await prepareRequest(request, req, rpc.method.input, admitted, maxRequestBytes);
      contextValues.set(requestRefusalKey, prepared.refusal);
      // The rest of a refused HTTP/1.1 body would be read (and dropped) to keep the connection.
      if (prepared.leftUnread && !("stream" in req)) res.setHeader("connection", "close");
      handed = prepared.request;
    }
    const response = await rpc(handed);
    await universalResponseToNodeResponse(response, res);
  };

  const handle = (req: HttpRequest, res: HttpResponse) => {
    const url = new URL(req.url ?? "/", "http://broker.invalid");
    void (async () => {
      const rpc = rpcs.get(url.pathname);
      if (rpc !== undefined) return serveRpc(rpc, req, res);
      if (Number(req.headers["content-length"] ?? 0) > maxRequestBytes) return refuseLargeBody(req, res, maxRequestBytes);
      for (const route of options.routes) {
        if (await route(req, res, url)) return;
      }
      res.statusCode = 404;
      res.end();
    })().catch((error: unknown) => {
      // A caller that went away mid-answer is no fault of a route's.
      if (error instanceof ConnectError && error.code === Code.Aborted) return;
      options.onRouteError(error, req);
      if (!res.headersSent) {
        res.statusCode = 500;
        res.setHeader("content-type", "text/plain; charset=utf-8");
      }
      res.end("internal error");
    });
  };

  const http1 = createHttp1Server({ keepAliveTimeout: 5_000 }, handle);
  const http2 = createHttp2Server({}, handle);
  const sockets = new Set<Socket>();
  const sessions = new Set<ServerHttp2Session>();
  http2.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("data", (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      const isHttp2 = first.subarray(0, 3).equals(HTTP2_PREFACE.subarray(0, 3));
      (isHttp2 ? http2 : http1).emit("connection", socket);
      process.nextTick(() => socket.resume());
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.address.port, options.address.host, () => {
      server.off("error", reject);
      resolve();
    });
  });

  return {
    port: (server.address() as AddressInfo).port,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        server.close();
        http2.close();
        // GOAWAY: clients finish their running streams and open no new ones here.
        for (const session of sessions) session.close();
        http1.closeIdleConnections();
        const deadline = Date.now() + graceMs;
        const poll = setInterval(() => {
          http1.closeIdleConnections();
          if (sockets.size === 0 || Date.now() >= deadline) {
            clearInterval(poll);
            for (const socket of sockets) socket.destroy();
            resolve();
          }
        }, 50);
      }),
  };
}
