/**
 * The wire tests of error reasons against the catalogue: every reason a client can receive has
 * a row (a real call refused with it, over both listeners) in one of the wire tables, with a
 * status its codes map to; every reason no caller receives as an ErrorInfo (start-up, once the
 * caller has gone, a redirect, a guard, a probe) names the test that raises it. A reason added
 * to the catalogue without either fails here. The code → status table is pinned whole.
 */
import { existsSync, readFileSync } from "node:fs";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ERROR_REASONS, type ErrorReason, type ErrorReasonEntry } from "../../src/domain/error-reasons.js";
import type { BrokerErrorCode } from "../../src/domain/errors.js";
import { GRPC_CODE_BY_ERROR } from "../../src/transport/error-mapping.js";
import { answeredReason, type WireCases } from "../support/wire-cases.js";
import { AUTHORIZATION_CASES } from "./error-reasons-wire-authorization.cases.js";
import { DEADLINE_CASES } from "./error-reasons-wire-deadlines.cases.js";
import { EDGE_CASES } from "./error-reasons-wire-edge.cases.js";
import { OPENID_CASES } from "./error-reasons-wire-openid.cases.js";
import { RACE_CASES } from "./error-reasons-wire-races.cases.js";
import { VAULT_LOGIN_CASES } from "./error-reasons-wire-vault-login.cases.js";
import { KEY_CASES } from "./error-reasons-wire-keys.cases.js";
import { TOKEN_CASES } from "./error-reasons-wire-tokens.cases.js";

const WIRE_TABLES: Record<string, WireCases<never>> = {
  "error-reasons-wire-authorization": AUTHORIZATION_CASES,
  "error-reasons-wire-tokens": TOKEN_CASES,
  "error-reasons-wire-keys": KEY_CASES,
  "error-reasons-wire-edge": EDGE_CASES,
  "error-reasons-wire-deadlines": DEADLINE_CASES,
  "error-reasons-wire-openid": OPENID_CASES,
  "error-reasons-wire-vault-login": VAULT_LOGIN_CASES,
  "error-reasons-wire-races": RACE_CASES,
};

/**
 * Where each reason no caller receives as an ErrorInfo (start-up only, raised once the caller has
 * gone, answered as a redirect, a guard, a probe's state) is raised and checked (paths under test/).
 */
const STARTUP_TEST = "integration/error-reasons-startup.test.ts";
const GUARDS_TEST = "integration/error-reasons-guards.test.ts";
const OFF_THE_WIRE_TESTED_IN: Partial<Record<ErrorReason, string>> = {
  AUDIT_LOG_CLOSED: GUARDS_TEST,
  CANCELLED: "integration/refresh-lost-answer.test.ts",
  CODE_MISSING: "integration/error-reasons-callback.test.ts",
  INVALID_AUDIT_EVENT: GUARDS_TEST,
  LOCAL_KEYRING_UNREADABLE: GUARDS_TEST,
  STATE_MISMATCH: "unit/provider-authorization-response.test.ts",
  STATE_MISSING: "unit/provider-authorization-response.test.ts",
  LISTEN_ADDRESS_UNAVAILABLE: STARTUP_TEST,
  LOCAL_KEYRING_INVALID: STARTUP_TEST,
  LOCAL_KEYRING_LOCKED: STARTUP_TEST,
  LOCAL_KEYRING_REFUSED_IN_PRODUCTION: STARTUP_TEST,
  LOCAL_SIGNING_KEY_INVALID: STARTUP_TEST,
  MIGRATION_CHANGED: STARTUP_TEST,
  MIGRATION_FAILED: STARTUP_TEST,
  VAULT_CREDENTIALS_MISSING: STARTUP_TEST,
  VAULT_KEY_MISSING: STARTUP_TEST,
  VAULT_KEY_NOT_DERIVED: "integration/crypto-vault-cipher.test.ts",
  CLIENT_ID_MISSING: STARTUP_TEST,
  CLIENT_SECRET_MISSING: STARTUP_TEST,
  ENDPOINTS_MISSING: STARTUP_TEST,
  SANDBOX_NOT_RUNNING: STARTUP_TEST,
  RETURN_TO_ALLOW_LIST_EMPTY: STARTUP_TEST,
  RETURN_TO_ALLOW_LIST_INVALID: STARTUP_TEST,
  TRUSTED_ISSUER_INVALID: STARTUP_TEST,
};

const catalogue = Object.entries(ERROR_REASONS) as [ErrorReason, ErrorReasonEntry][];
/** Raised where no caller receives it as an ErrorInfo: each is tested where it arises instead. */
const offTheWire = (entry: ErrorReasonEntry): boolean =>
  entry.startupOnly === true || entry.unanswered === true || entry.redirectOnly === true || entry.guardOnly === true || entry.probeOnly === true;

function rowsOf(reason: ErrorReason): string[] {
  return Object.entries(WIRE_TABLES)
    .filter(([, table]) => Object.hasOwn(table, reason))
    .map(([name]) => name);
}

describe("the error-reason wire tables", () => {
  it("hold a row for every reason a client can receive, in one table only", () => {
    const visible = catalogue.filter(([, entry]) => !offTheWire(entry)).map(([reason]) => reason);
    expect(visible.filter((reason) => rowsOf(reason).length === 0), "reasons without a wire row").toEqual([]);
    expect(visible.filter((reason) => rowsOf(reason).length > 1), "rows in several tables").toEqual([]);
  });

  it("hold no row for a reason no caller receives, and name the test of each", () => {
    for (const [reason, entry] of catalogue) {
      if (!offTheWire(entry)) continue;
      expect(rowsOf(reason), reason).toEqual([]);
      const file = OFF_THE_WIRE_TESTED_IN[reason];
      expect(file, `${reason}: the test that raises it`).toBeDefined();
      const path = new URL(`../${file ?? ""}`, import.meta.url);
      expect(existsSync(path), `${reason}: ${file ?? ""}`).toBe(true);
      expect(readFileSync(path, "utf8"), `${reason} in ${file ?? ""}`).toContain(`"${reason}"`);
    }
  });

  it("expect of each reason a status its codes map to", () => {
    for (const table of Object.values(WIRE_TABLES)) {
      for (const [reason, row] of Object.entries(table) as [ErrorReason, { status: Code }][]) {
        const answered = answeredReason(reason) as ErrorReason;
        const statuses = ERROR_REASONS[answered].codes.map((code: BrokerErrorCode) => GRPC_CODE_BY_ERROR[code]);
        expect(statuses, reason).toContain(row.status);
      }
    }
  });
});

describe("the code → status table", () => {
  it("maps every broker error code to its gRPC status", () => {
    expect(GRPC_CODE_BY_ERROR).toStrictEqual({
      invalid_argument: Code.InvalidArgument,
      not_found: Code.NotFound,
      already_exists: Code.AlreadyExists,
      unauthenticated: Code.Unauthenticated,
      permission_denied: Code.PermissionDenied,
      rate_limited: Code.ResourceExhausted,
      request_too_large: Code.ResourceExhausted,
      integration_needs_reauth: Code.FailedPrecondition,
      scope_not_granted: Code.FailedPrecondition,
      authorization_session_invalid: Code.FailedPrecondition,
      authorization_denied: Code.PermissionDenied,
      failed_precondition: Code.FailedPrecondition,
      provider_rate_limited: Code.ResourceExhausted,
      provider_unavailable: Code.Unavailable,
      provider_misconfigured: Code.FailedPrecondition,
      provider_error: Code.Unavailable,
      database_unavailable: Code.Unavailable,
      key_service_unavailable: Code.Unavailable,
      key_service_error: Code.Internal,
      draining: Code.Unavailable,
      deadline_exceeded: Code.DeadlineExceeded,
      internal: Code.Internal,
    } satisfies Record<BrokerErrorCode, Code>);
  });
});
