/**
 * AuditService.ListAuditEvents through the real listeners and interceptor chain, against rows
 * written by the real audit writer.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../src/gen/google/rpc/error_details_pb.js";
import { AuditService, type ListAuditEventsRequestSchema } from "../../src/gen/oauthbroker/v1/audit_service_pb.js";
import type { AuditEventInput } from "../../src/domain/ports.js";
import { createPostgresAuditLog } from "../../src/storage/audit-log.js";
import { createAuditTrailReader } from "../../src/storage/audit-query.js";
import { createAuditServiceHandlers } from "../../src/transport/handlers/audit-service.js";
import { bindService } from "../../src/transport/service-binding.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { captureLogger } from "../support/log-capture.js";
import { startTransportFixture, type TransportFixture } from "../support/transport-fixture.js";

const T0 = Date.parse("2024-06-01T00:00:00.000Z");
const MINUTE = 60_000;
let db: TestDatabase;
let fixture: TransportFixture;
let client: Client<typeof AuditService>;

/** Twelve events, one a minute: alternating users, callers, outcomes. */
const EVENTS: AuditEventInput[] = Array.from({ length: 12 }, (_, i) => ({
  action: i % 3 === 0 ? "integration.deleted" : "token.issued",
  outcome: i % 4 === 3 ? "denied" : "success",
  reason: i % 4 === 3 ? "POLICY" : "",
  caller: i % 2 === 0 ? "svc-mail" : "svc-cal",
  callerKind: "service",
  userId: i < 6 ? "alice" : "bob",
  integrationId: `int-${i % 5}`,
  provider: "google",
  requestId: `req-${i}`,
  peer: "127.0.0.1:40000",
  scopes: ["openid"],
  details: { index: String(i) },
}));

beforeAll(async () => {
  db = await createTestDatabase();
  let index = 0;
  const log = createPostgresAuditLog({ sql: db.sql, logger: captureLogger().logger, maxDelayMs: 0, clock: { now: () => new Date(T0 + index * MINUTE) } });
  for (index = 0; index < EVENTS.length; index += 1) await log.record(EVENTS[index]!);
  await log.close();
  fixture = await startTransportFixture({ bindings: [bindService(AuditService, createAuditServiceHandlers({ auditTrail: createAuditTrailReader(db.sql) }))] });
  client = createClient(AuditService, createConnectTransport({ baseUrl: fixture.httpUrl, httpVersion: "1.1" }));
});
afterAll(async () => {
  await fixture?.close();
  await db?.drop();
});

function indexes(response: { events: { details: Record<string, string> }[] }): number[] {
  return response.events.map((event) => Number(event.details["index"]));
}

async function failure(request: MessageInitShape<typeof ListAuditEventsRequestSchema>): Promise<ConnectError> {
  try {
    await client.listAuditEvents(request);
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("the call succeeded");
}

describe("ListAuditEvents", () => {
  it("returns every field, hashes included, oldest first, 100 per page by default", async () => {
    const response = await client.listAuditEvents({});
    expect(indexes(response)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(response.nextPageToken).toBe("");
    const stored = await db.sql<{ hash: string; previous_hash: string }[]>`
      select hash, previous_hash from audit_events where sequence = 4`;
    const fourth = response.events[3]!;
    expect(fourth).toMatchObject({
      sequence: 4n,
      action: "integration.deleted",
      outcome: "denied",
      reason: "POLICY",
      caller: "svc-cal",
      callerKind: "service",
      userId: "alice",
      integrationId: "int-3",
      provider: "google",
      requestId: "req-3",
      peer: "127.0.0.1:40000",
      scopes: ["openid"],
      hash: stored[0]?.hash,
      previousHash: stored[0]?.previous_hash,
    });
    expect(fourth.previousHash).toBe(response.events[2]?.hash);
    expect(fourth.time).toEqual(timestampFromDate(new Date(T0 + 3 * MINUTE)));
  });

  it("filters by user, caller, integration, action, outcome and time range", async () => {
    expect(indexes(await client.listAuditEvents({ userId: "bob" }))).toEqual([6, 7, 8, 9, 10, 11]);
    expect(indexes(await client.listAuditEvents({ caller: "svc-cal", userId: "alice" }))).toEqual([1, 3, 5]);
    expect(indexes(await client.listAuditEvents({ integrationId: "int-2" }))).toEqual([2, 7]);
    expect(indexes(await client.listAuditEvents({ action: "integration.deleted" }))).toEqual([0, 3, 6, 9]);
    expect(indexes(await client.listAuditEvents({ outcome: "denied" }))).toEqual([3, 7, 11]);
    const range = {
      startTime: timestampFromDate(new Date(T0 + 2 * MINUTE)),
      endTime: timestampFromDate(new Date(T0 + 5 * MINUTE)),
    };
    // Start inclusive, end exclusive.
    expect(indexes(await client.listAuditEvents(range))).toEqual([2, 3, 4]);
    expect(indexes(await client.listAuditEvents({ userId: "nobody" }))).toEqual([]);
  });

  it("pages with opaque tokens until the last page, whose token is empty", async () => {
    const seen: number[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const response = await client.listAuditEvents({ caller: "svc-mail", pageSize: 4, pageToken });
      seen.push(...indexes(response));
      pageToken = response.nextPageToken;
      pages += 1;
      expect(pageToken).not.toMatch(/[+/=]/);
    } while (pageToken !== "" && pages < 10);
    expect(seen).toEqual([0, 2, 4, 6, 8, 10]);
    expect(pages).toBe(2);
    // An exact multiple of the page size ends without an empty extra page.
    const exact = await client.listAuditEvents({ userId: "alice", pageSize: 6 });
    expect(indexes(exact)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(exact.nextPageToken).toBe("");
  });

  it("refuses a page token used with other filters, and a token it did not issue", async () => {
    const first = await client.listAuditEvents({ userId: "alice", pageSize: 2 });
    expect(first.nextPageToken).not.toBe("");
    // The page size may change between pages; the filters may not.
    const second = await client.listAuditEvents({ userId: "alice", pageSize: 3, pageToken: first.nextPageToken });
    expect(indexes(second)).toEqual([2, 3, 4]);
    for (const request of [
      { userId: "bob", pageToken: first.nextPageToken },
      { userId: "alice", pageToken: "not-a-token" },
      { userId: "alice", pageToken: Buffer.from('{"s":"-1","f":"x"}').toString("base64url") },
    ]) {
      const error = await failure(request);
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["page_token"]);
    }
  });

  it("refuses a page size outside 1..1000 and an unknown outcome, naming the field", async () => {
    for (const pageSize of [1001, -1]) {
      const error = await failure({ pageSize });
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.rawMessage).toContain("page_size");
      expect(error.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["page_size"]);
    }
    expect(indexes(await client.listAuditEvents({ pageSize: 1000 }))).toHaveLength(12);
    const outcome = await failure({ outcome: "bogus" });
    expect(outcome.code).toBe(Code.InvalidArgument);
    expect(outcome.rawMessage).toContain("outcome");
    const range = await failure({ startTime: timestampFromDate(new Date(T0 + MINUTE)), endTime: timestampFromDate(new Date(T0)) });
    expect(range.code).toBe(Code.InvalidArgument);
    expect(range.rawMessage).toContain("end_time");
  });
});
