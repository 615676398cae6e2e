/**
 * The reasons no caller receives as an ErrorInfo although a running broker raises them, each
 * raised where it arises, on a broker with real PostgreSQL and its local keyring:
 * - `LOCAL_KEYRING_UNREADABLE` is a state, not a refusal: GetStatus (on both listeners) and
 *   `/readyz` report the key service down while the keyring file cannot be read, and calls go on
 *   with the keys in memory;
 * - `INVALID_AUDIT_EVENT` guards the trail against an event the broker's own code built wrong;
 * - `AUDIT_LOG_CLOSED` refuses an event that arrives once the audit log closed for shutdown,
 *   which happens after the listeners (and their connections) closed: no caller is left.
 */
import { rename } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyringPath } from "../../src/crypto/keyring-file.js";
import type { ErrorReason } from "../../src/domain/error-reasons.js";
import type { AuditEventInput } from "../../src/domain/ports.js";
import { ComponentState, StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { createPostgresAuditLog } from "../../src/storage/audit-log.js";
import { caught } from "../support/caught.js";
import { captureLogger } from "../support/log-capture.js";
import { startReasonWorld, type ReasonWorld } from "../support/reason-world.js";
import { WIRES } from "../support/wire-call.js";

let world: ReasonWorld;

beforeAll(async () => {
  world = await startReasonWorld();
});

afterAll(async () => {
  await world?.close();
});

function expectReason(error: { reason: string }, reason: ErrorReason): void {
  expect(error.reason).toBe(reason);
}

async function auditRows(action: string): Promise<number> {
  const [row] = await world.db.sql<{ n: number }[]>`select count(*)::int as n from audit_events where action = ${action}`;
  return row?.n ?? 0;
}

describe("a probe's state, never a refusal", () => {
  it("LOCAL_KEYRING_UNREADABLE: GetStatus and /readyz report the key service down while the keyring file cannot be read", async () => {
    const path = keyringPath(world.broker.dataDir);
    const aside = `${path}.aside`;
    await rename(path, aside);
    try {
      expectReason(await caught(world.broker.broker.cipher.check()), "LOCAL_KEYRING_UNREADABLE");
      for (const wire of WIRES) {
        const status = await world.callers[wire].unary(StatusService.method.getStatus, {}, { authorization: world.admin });
        expect(status.keyService, wire).toMatchObject({ state: ComponentState.DOWN, detail: "the local keyring file cannot be read" });
        expect(status.database?.state, wire).toBe(ComponentState.OK);
      }
      const ready = await fetch(`${world.broker.httpUrl}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({
        status: "not ready",
        checks: expect.arrayContaining([{ name: "key_service", ok: false, reason: "the local keyring file cannot be read" }]),
      });
      // Calls are not refused for it: the keys the broker holds still serve.
      const providers = await world.callers.connect.unary(ProviderService.method.listProviders, {}, { authorization: world.admin });
      expect(providers.providers.length).toBeGreaterThan(0);
    } finally {
      await rename(aside, path);
    }
    await world.broker.broker.cipher.check();
    expect((await fetch(`${world.broker.httpUrl}/readyz`)).status).toBe(200);
  });
});

describe("guards and a shutdown's edge of the audit trail", () => {
  it("INVALID_AUDIT_EVENT: an event that breaks the schema is refused, and nothing is written", async () => {
    const { logger } = captureLogger();
    const audit = createPostgresAuditLog({ sql: world.db.sql, logger });
    try {
      const malformed = [
        { action: "guard.tested", outcome: "maybe" },
        { action: "", outcome: "success" },
        { action: "guard.tested", outcome: "success", accessToken: "must-never-be-stored" },
        { action: "guard.tested", outcome: "success", details: { count: 1 } },
      ] as unknown as AuditEventInput[];
      for (const event of malformed) expectReason(await caught(audit.record(event)), "INVALID_AUDIT_EVENT");
      await audit.flush();
      expect(await auditRows("guard.tested")).toBe(0);
    } finally {
      await audit.close();
    }
  });

  it("AUDIT_LOG_CLOSED: an event arriving once the audit log closed is refused, the events before it are written", async () => {
    const { logger } = captureLogger();
    const audit = createPostgresAuditLog({ sql: world.db.sql, logger });
    await audit.record({ action: "shutdown.tested", outcome: "success" });
    await audit.close();
    const late = await caught(audit.record({ action: "shutdown.tested", outcome: "success" }));
    expectReason(late, "AUDIT_LOG_CLOSED");
    expect(late.code).toBe("internal");
    expect(await auditRows("shutdown.tested")).toBe(1);
  });
});
