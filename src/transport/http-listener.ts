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
import { createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { ListenAddress } from "../config/types.js";
import { peerKey, type ServiceBinding } from "./service-binding.js";

export type HttpRequest = IncomingMessage | Http2ServerRequest;
export type HttpResponse = ServerResponse | Http2ServerResponse;

/** A plain HTTP route; returns false to pass the request on. */
export type HttpRoute = (req: HttpRequest, res: HttpResponse, url: URL) => boolean | Promise<boolean>;

export interface HttpListener {
  readonly port: number;
  close(graceMs: number): Promise<void>;
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
}): Promise<HttpListener> {
  const connectHandler = connectNodeAdapter({
    routes(router: ConnectRouter) {
      for (const binding of options.bindings) router.service(binding.service, binding.impl);
    },
    contextValues: (req) => createContextValues().set(peerKey, peerOf(req)),
  });

  const handle = (req: HttpRequest, res: HttpResponse) => {
    const url = new URL(req.url ?? "/", "http://broker.invalid");
    void (async () => {
      for (const route of options.routes) {
        if (await route(req, res, url)) return;
      }
      connectHandler(req, res);
    })().catch((error: unknown) => {
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
