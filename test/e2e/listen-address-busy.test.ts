/** A busy listen address fails the start at once, naming its variable, before any database work. */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runToExit, spawnBroker } from "../support/broker-process.js";

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0)) await step();
});

async function occupiedPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => new Promise((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

describe("a listen address already in use", () => {
  for (const variable of ["BROKER_GRPC_ADDR", "BROKER_HTTP_ADDR"]) {
    it(`${variable}: exits 1 with one sentence naming it, and starts no database`, async () => {
      const dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-busy-"));
      cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
      const port = await occupiedPort();
      const { code, output } = await runToExit(spawnBroker({ BROKER_DATA_DIR: dataDir, [variable]: `127.0.0.1:${port}` }), 60_000);
      expect(code, output).toBe(1);
      expect(output).toContain(`oauth-broker: ${variable} 127.0.0.1:${port} is already in use; set ${variable} to a free host:port\n`);
      expect(output).not.toMatch(/\n\s+at /);
      // Neither the embedded PostgreSQL nor the local keys were created.
      expect(await readdir(dataDir)).toEqual([]);
    }, 90_000);
  }
});
