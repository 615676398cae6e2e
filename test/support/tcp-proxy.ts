/**
 * A TCP proxy under the test's control, placed between the broker's database pool and
 * PostgreSQL. `cut()` resets every open connection (the client sees ECONNRESET, as after a
 * network failure; the server sees its connections close, so an open transaction rolls back),
 * and resets every new one a moment after accepting it, until `restore()`.
 *
 * New connections are reset after a delay, as a remote network would, not at once: postgres.js
 * 3.4.9 queues its startup message for the next event-loop turn, and a connection that fails
 * before that turn keeps a cleared write timer for good and can never connect again (see
 * porsager/postgres#1208 and the pool-poisoning reports around it).
 */
import { connect, createServer, type AddressInfo, type Socket } from "node:net";

const RESET_DELAY_MS = 20;

export interface TcpProxy {
  /** `url` (a connection URL) with its host and port replaced by the proxy's. */
  via(url: string): string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<Socket>();
  const refused = new Set<Socket>();
  let accepting = true;

  const server = createServer((client) => {
    if (!accepting) {
      refused.add(client);
      client.on("error", () => undefined);
      setTimeout(() => {
        refused.delete(client);
        client.resetAndDestroy();
      }, RESET_DELAY_MS);
      return;
    }
    const upstream = connect(target.port, target.host);
    open.add(client).add(upstream);
    const drop = () => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const cut = () => {
    accepting = false;
    for (const socket of [...open]) socket.resetAndDestroy();
    open.clear();
  };

  return {
    via(url) {
      const parsed = new URL(url);
      parsed.hostname = "127.0.0.1";
      parsed.port = String(port);
      return parsed.toString();
    },
    cut,
    restore() {
      accepting = true;
    },
    async close() {
      cut();
      for (const socket of [...refused]) socket.resetAndDestroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
