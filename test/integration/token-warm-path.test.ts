/**
 * GetAccessToken's warm path on the gRPC listener (transport/warm-token-path.ts), against the
 * whole broker on real PostgreSQL: repeated calls of one caller for one cached token — the ones
 * answered in the turn they arrive in — leave one log line each, the same metrics and the same
 * response headers as through the interceptor chain, take from the caller's rate limit, obey a
 * policy reload at once, and keep the disclosure rule: the first disclosure is committed as
 * `token.issued` before its answer, every repeat is counted into `token.reissued`. A cached
 * credential stops being answered once it expires, and a draining replica refuses warm callers.
 */
import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import type * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signLocalToken } from "../../src/auth/local-signing-key.js";
import { loadConfig } from "../../src/config/load-config.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { connectSandboxAccount } from "../support/browser-flow.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";
import { grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { startInProcessBroker, type InProcessBroker } from "../support/in-process-broker.js";
import { captureLogger } from "../support/log-capture.js";

const GET_ACCESS_TOKEN = TokenService.method.getAccessToken;
const FULL_METHOD = "oauthbroker.v1.TokenService/GetAccessToken";
const BURST = 12;

/** Without its policy entry, calendar is an unpoliced service: it may not call GetAccessToken. */
function brokerYaml(calendarPolicy: boolean): string {
  return [
    "sandbox:",
    "  enabled: true",
    "limits:",
    "  perPrincipal:",
    // Refills one call in about three hours: within the test, the burst is all there is.
    `    token: { ratePerSecond: 0.0001, burst: ${BURST} }`,
    "policies:",
    "  - { service: mail, providers: [sandbox], scopes: ['*'], actForUsers: true, rpcs: ['TokenService/*'] }",
    "  - { service: notes, providers: [sandbox], scopes: ['*'], actForUsers: true }",
    // Each with a burst of its own, for the tests that run after the others spent theirs.
    "  - { service: diary, providers: [sandbox], scopes: ['*'], actForUsers: true }",
    "  - { service: drive, providers: [sandbox], scopes: ['*'], actForUsers: true }",
    ...(calendarPolicy ? ["  - { service: calendar, providers: [sandbox], scopes: ['*'], actForUsers: true }"] : []),
    "",
  ].join("\n");
}

interface AuditRow {
  action: string;
  caller: string;
  request_id: string;
  details: Record<string, string>;
}

describe("GetAccessToken's warm path", () => {
  const { logger, log } = captureLogger("info");
  let db: TestDatabase;
  let running: InProcessBroker;
  let client: grpc.Client;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    db = await createTestDatabase();
    running = await startInProcessBroker({ yaml: brokerYaml(true), databaseUrl: db.url, logger, name: "oauth-broker-warm-path" });
    await connectSandboxAccount(running.httpUrl, await running.token("ada", "user"), "ada");
    for (const service of ["mail", "calendar", "notes", "drive"]) tokens[service] = await running.token(service, "service");
    client = grpcClient(running.grpcAddress);
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await running?.stop();
    await db?.drop();
  });

  const ask = (service: string, requestId: string, scopes: string[] = []) =>
    unary(client, GET_ACCESS_TOKEN, { userId: "ada", provider: "sandbox", scopes }, { metadata: { authorization: `Bearer ${tokens[service]}`, "x-request-id": requestId } });

  const rpcLines = (service: string) =>
    log.lines.filter((line) => line["msg"] === "rpc" && line["method"] === FULL_METHOD && line["caller"] === `service:${service}`);

  const handled = async (code: string): Promise<number> => {
    const metric = await running.broker.metrics.rpcHandled.get();
    return metric.values.find((v) => v.labels["grpc_method"] === "GetAccessToken" && v.labels["grpc_code"] === code)?.value ?? 0;
  };

  const auditRows = (caller: string) =>
    db.sql<AuditRow[]>`
      select action, caller, request_id, details from audit_events
      where caller = ${caller} and action in ('token.issued', 'token.reissued') order by sequence`;

  it("answers repeats with one line and the metrics of each call, counts them as repeats after one durable first disclosure, and enforces the rate limit", async () => {
    const okBefore = await handled("OK");
    const answers = [];
    for (let i = 1; i <= BURST; i++) answers.push(await ask("mail", `warm-${i}`));

    const accessTokens = new Set(answers.map(({ response }) => response.accessToken));
    expect(accessTokens.size).toBe(1);
    answers.forEach(({ headers }, index) => {
      expect(headers.get("x-request-id")).toEqual([`warm-${index + 1}`]);
      expect(headers.get("cache-control")).toEqual(["no-store"]);
    });
    // The first call's record was committed before its answer arrived.
    const lines = rpcLines("mail");
    expect(lines.map((line) => line["requestId"])).toEqual(answers.map((_, i) => `warm-${i + 1}`));
    expect(lines.every((line) => line["grpcCode"] === "OK" && line["protocol"] === "grpc")).toBe(true);
    expect((await handled("OK")) - okBefore).toBe(BURST);

    // The burst is spent, whichever path a call took.
    const refused = await ask("mail", "warm-refused").catch((error: GrpcFailure) => error);
    expect(refused).toMatchObject({ code: 8, errorInfo: { reason: "RATE_LIMITED" } });
    expect(rpcLines("mail").at(-1)).toMatchObject({ requestId: "warm-refused", grpcCode: "RESOURCE_EXHAUSTED" });

    await running.broker.jobs.disclosureCounts.runOnce();
    const rows = await auditRows("mail");
    expect(rows.map((row) => row.action)).toEqual(["token.issued", "token.reissued"]);
    expect(rows[0]).toMatchObject({ request_id: "warm-1" });
    expect(rows[1]?.details).toMatchObject({ count: String(BURST - 1), first_request_id: "warm-2", last_request_id: `warm-${BURST}` });
  });

  it("sends a new scope set of a warm token through the durable first disclosure", async () => {
    for (let i = 1; i <= 3; i++) await ask("notes", `plain-${i}`);
    await ask("notes", "scoped-1", ["openid"]);
    // Committed before the answer: no wait is needed to see it.
    const issued = await db.sql<Array<{ request_id: string; scopes: string[] }>>`
      select request_id, scopes from audit_events where caller = 'notes' and action = 'token.issued' order by sequence`;
    expect(issued).toEqual([
      { request_id: "plain-1", scopes: [] },
      { request_id: "scoped-1", scopes: ["openid"] },
    ]);
    await ask("notes", "scoped-2", ["openid"]);
    await running.broker.jobs.disclosureCounts.runOnce();
    const reissued = await db.sql<Array<{ details: Record<string, string>; scopes: string[] }>>`
      select details, scopes from audit_events where caller = 'notes' and action = 'token.reissued' order by sequence`;
    expect(reissued.map((row) => [row.scopes, row.details["count"]])).toEqual(
      expect.arrayContaining([
        [[], "2"],
        [["openid"], "1"],
      ]),
    );
    expect(reissued).toHaveLength(2);
  });

  it("obeys a policy reload at the next call, although its decision for the caller was made before", async () => {
    for (let i = 1; i <= 3; i++) await ask("calendar", `before-reload-${i}`);
    const configPath = join(running.dataDir, "broker.yaml");
    await writeFile(configPath, brokerYaml(false));
    running.broker.reload(
      loadConfig({
        env: {
          BROKER_DATA_DIR: running.dataDir,
          BROKER_CONFIG: configPath,
          BROKER_GRPC_ADDR: running.grpcAddress,
          BROKER_HTTP_ADDR: running.httpUrl.replace("http://", ""),
          BROKER_PUBLIC_URL: running.httpUrl,
          DATABASE_URL: db.url,
        },
      }),
    );
    const denied = await ask("calendar", "after-reload").catch((error: GrpcFailure) => error);
    expect(denied).toMatchObject({ code: 7, errorInfo: { reason: "RPC_NOT_ALLOWED" } });
    expect(rpcLines("calendar").at(-1)).toMatchObject({ requestId: "after-reload", grpcCode: "PERMISSION_DENIED" });
    await expect
      .poll(async () => (await db.sql`select 1 from audit_events where action = 'policy.denied' and caller = 'calendar' and request_id = 'after-reload'`).length)
      .toBe(1);
  });
  it("refuses a caller whose credential has expired, although it was verified and cached", async () => {
    // Expires about eight seconds from now: room for the calls that make it warm on a loaded
    // machine. Any path accepts it until the issuer's clock skew (30 s by default) has passed too.
    const expiresAtMs = (Math.floor(Date.now() / 1000) + 8) * 1000;
    const acceptedUntilMs = expiresAtMs + 30_000;
    const credential = await signLocalToken(running.signingKey, { subject: "diary", kind: "service", ttlSeconds: 3600, now: new Date(expiresAtMs - 3_600_000) });
    const askWith = (requestId: string) =>
      unary(client, GET_ACCESS_TOKEN, { userId: "ada", provider: "sandbox", scopes: [] }, { metadata: { authorization: `Bearer ${credential}`, "x-request-id": requestId } });
    const answeredSentAt: number[] = [];
    let refused: GrpcFailure | undefined;
    for (let i = 0; refused === undefined; i++) {
      const sentAt = Date.now();
      const outcome = await askWith(`expiring-${i}`).then(
        () => undefined,
        (error: GrpcFailure) => error,
      );
      if (outcome === undefined) answeredSentAt.push(sentAt);
      else refused = outcome;
      expect(Date.now(), "still answered well after the credential expired").toBeLessThan(acceptedUntilMs + 10_000);
      // Two quick calls make the credential warm; then paced, one every 4 s, to stay within diary's burst.
      if (refused === undefined && i >= 1) await new Promise((resolve) => setTimeout(resolve, 4_000));
    }
    expect(answeredSentAt.length, "the credential was used while valid, so later calls could be answered at once").toBeGreaterThan(1);
    expect(refused).toMatchObject({ code: 16 });
    for (const sentAt of answeredSentAt) expect(sentAt).toBeLessThan(acceptedUntilMs);
    expect(Date.now()).toBeGreaterThanOrEqual(acceptedUntilMs);
  }, 90_000);

  it("refuses warm callers once the replica drains", async () => {
    await ask("drive", "before-drain");
    await ask("drive", "warm-before-drain");
    running.broker.drain();
    const refused = await ask("drive", "after-drain").catch((error: GrpcFailure) => error);
    expect(refused).toMatchObject({ code: 14, errorInfo: { reason: "DRAINING" } });
    // Refused before authentication, so the line names no caller.
    await expect.poll(() => log.lines.filter((line) => line["msg"] === "rpc" && line["requestId"] === "after-drain")).toMatchObject([{ method: FULL_METHOD, grpcCode: "UNAVAILABLE" }]);
  });
});
