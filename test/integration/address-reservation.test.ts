import { connect, createServer, type Socket } from "node:net";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { reserveListenAddresses } from "../../src/transport/address-reservation.js";
import { freePort } from "../support/free-port.js";

const sockets: Socket[] = [];
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
});

describe("listen address reservation", () => {
  it("turns away a client that connects while the broker starts, so releasing never waits on it", async () => {
    const port = await freePort();
    const reservation = await reserveListenAddresses([{ variable: "BROKER_HTTP_ADDR", address: { host: "127.0.0.1", port } }]);
    // A readiness probe that connects early and would keep its connection open.
    const probe = connect({ host: "127.0.0.1", port });
    sockets.push(probe);
    probe.on("error", () => {});
    await once(probe, "close");

    await reservation.release();
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port, exclusive: true }, resolve);
    });
    expect(server.address()).toMatchObject({ port });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
