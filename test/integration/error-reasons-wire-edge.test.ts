/**
 * Every reason of the request edge and of the broker's dependencies, on both listeners: the
 * status, `ErrorInfo` reason, domain and metadata keys a caller receives.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { adminDatabaseUrl } from "../support/database.js";
import { startReasonWorld } from "../support/reason-world.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { EDGE_CASES, MAX_REQUEST_BYTES, type EdgeWorld } from "./error-reasons-wire-edge.cases.js";

let world: EdgeWorld;
let proxy: TcpProxy | undefined;

beforeAll(async () => {
  const postgres = new URL(adminDatabaseUrl());
  proxy = await startTcpProxy({ host: postgres.hostname, port: Number(postgres.port || 5432) });
  const via = proxy;
  world = { ...(await startReasonWorld({ limitsYaml: `  maxRequestBytes: ${MAX_REQUEST_BYTES}`, brokerDatabaseUrl: (url) => via.via(url) })), proxy: via };
});

afterAll(async () => {
  await world?.close();
  await proxy?.close();
});

describe("the edge and the broker's dependencies refuse on the wire", () => {
  itRefusesOnTheWire(EDGE_CASES, () => world);
});
