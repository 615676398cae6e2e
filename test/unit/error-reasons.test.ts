/**
 * The catalogue of `ErrorInfo.reason` values against the README: every reason a caller can
 * receive is documented with its status, and the README names no reason the broker cannot raise.
 */
import { readFileSync } from "node:fs";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { defaultReason, ERROR_REASONS, isErrorReason, type CodeWithDefaultReason, type ErrorReason } from "../../src/domain/error-reasons.js";
import type { BrokerErrorCode } from "../../src/domain/errors.js";
import { BrokerError } from "../../src/domain/errors.js";
import { GRPC_CODE_BY_ERROR } from "../../src/transport/error-mapping.js";

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
const REASON_COLUMN = "`ErrorInfo.reason`";
const catalogue = Object.entries(ERROR_REASONS) as [ErrorReason, (typeof ERROR_REASONS)[ErrorReason]][];
/** Never an ErrorInfo a caller receives: start-up, translated, once the caller has gone, a redirect, a guard, a probe. */
const HIDDEN_MARKERS = ["startupOnly", "seenAs", "unanswered", "redirectOnly", "guardOnly", "probeOnly"] as const;
const hidden = (entry: (typeof ERROR_REASONS)[ErrorReason]): boolean => HIDDEN_MARKERS.some((marker) => marker in entry);
const clientVisible = catalogue.filter(([, entry]) => !hidden(entry)).map(([reason]) => reason);
/** Refusals of these codes come in several kinds, and no code path raises one without saying which. */
const CODES_WITHOUT_DEFAULT_REASON = [
  "authorization_denied",
  "authorization_session_invalid",
  "failed_precondition",
  "key_service_error",
  "permission_denied",
  "provider_misconfigured",
] as const satisfies readonly Exclude<BrokerErrorCode, CodeWithDefaultReason>[];

interface ReasonTable {
  readonly heading: string;
  readonly rows: readonly { readonly cells: readonly string[]; readonly reasons: readonly string[] }[];
  readonly reasonColumn: number;
}

/** The README's tables that have an `ErrorInfo.reason` column, with the heading above each. */
function reasonTables(markdown: string): ReasonTable[] {
  const tables: ReasonTable[] = [];
  const lines = markdown.split("\n");
  let heading = "";
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i] ?? "";
    if (line.startsWith("#")) heading = line.replace(/^#+\s*/, "");
    const header = cellsOf(line);
    const reasonColumn = header.indexOf(REASON_COLUMN);
    if (reasonColumn < 0 || !/^\|(\s*-+\s*\|)+$/.test(lines[i + 1] ?? "")) continue;
    const rows = [];
    for (i += 2; (lines[i] ?? "").startsWith("|"); i += 1) {
      const cells = cellsOf(lines[i] ?? "");
      rows.push({ cells, reasons: [...(cells[reasonColumn] ?? "").matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1] ?? "") });
    }
    tables.push({ heading, rows, reasonColumn });
  }
  return tables;
}

function cellsOf(line: string): string[] {
  if (!line.startsWith("|")) return [];
  return line.slice(1, line.endsWith("|") ? -1 : undefined).split("|").map((cell) => cell.trim());
}

/**
 * Reasons the README's prose names: "reason `X`", "reasons: `X`, `Y`", "reason `X` (or `Y`)".
 * Upper-case words elsewhere (statuses, environment variables) are not reasons.
 */
function reasonsInProse(markdown: string): string[] {
  const mention = /\breasons?\b(?::| is| =)?\s+((?:`[A-Z][A-Z0-9_]*`(?:\s*\(or\s+|,?\s+(?:or\s+|and\s+)?)?)+)/g;
  return [...markdown.matchAll(mention)].flatMap((match) => [...(match[1] ?? "").matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1] ?? ""));
}

/** `Code.InvalidArgument` → `INVALID_ARGUMENT`, as the README writes statuses. */
function statusName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

describe("the error reason catalogue", () => {
  it("is one sorted list of upper-snake-case reasons, each with a code and a meaning", () => {
    const reasons = catalogue.map(([reason]) => reason);
    expect(reasons).toEqual([...reasons].sort());
    for (const [reason, entry] of catalogue) {
      expect(reason).toMatch(/^[A-Z][A-Z0-9_]*$/);
      expect(entry.codes.length, reason).toBeGreaterThan(0);
      expect(entry.meaning.length, reason).toBeGreaterThan(10);
    }
  });

  it("holds the default reason of every code but those whose errors always name their refusal", () => {
    for (const code of Object.keys(GRPC_CODE_BY_ERROR) as BrokerErrorCode[]) {
      const reason = code.toUpperCase();
      if ((CODES_WITHOUT_DEFAULT_REASON as readonly string[]).includes(code)) {
        expect(isErrorReason(reason), reason).toBe(false);
        continue;
      }
      expect(isErrorReason(reason), reason).toBe(true);
      expect(defaultReason(code as CodeWithDefaultReason)).toBe(reason);
      expect(ERROR_REASONS[reason as ErrorReason].codes as readonly string[], reason).toContain(code);
      expect(new BrokerError(code as CodeWithDefaultReason, "x").reason).toBe(reason);
    }
    // @ts-expect-error an error of a code without a default reason names one
    expect(new BrokerError("permission_denied", "x").reason).toBe("PERMISSION_DENIED");
    expect(new BrokerError("permission_denied", "x", { reason: "RPC_NOT_ALLOWED" }).reason).toBe("RPC_NOT_ALLOWED");
  });

  it("lists every code under at least one reason", () => {
    const listed = new Set(catalogue.flatMap(([, entry]) => entry.codes));
    expect((Object.keys(GRPC_CODE_BY_ERROR) as BrokerErrorCode[]).filter((code) => !listed.has(code))).toEqual([]);
  });

  it("translates a hidden reason into one a caller can receive", () => {
    for (const [reason, entry] of catalogue) {
      if (!("seenAs" in entry)) continue;
      expect(clientVisible, reason).toContain(entry.seenAs);
    }
  });

  it("recognises only its own reasons", () => {
    expect(isErrorReason("PROVIDER_RATE_LIMITED")).toBe(true);
    expect(isErrorReason("KEY_SERVICE_SEALED")).toBe(false);
    expect(isErrorReason("toString")).toBe(false);
  });
});

describe("the README's error tables", () => {
  const tables = reasonTables(README);
  const documented = new Set(tables.flatMap((table) => table.rows.flatMap((row) => row.reasons)));

  it("are found under Errors, Every error reason and the request limits", () => {
    expect(tables.map((table) => table.heading)).toEqual(["Errors", "Every error reason", "Request limits and refusals"]);
  });

  it("name only reasons of the catalogue", () => {
    expect([...documented].filter((reason) => !isErrorReason(reason))).toEqual([]);
  });

  it("and so does the prose around them", () => {
    const named = reasonsInProse(README);
    expect(named).toEqual(expect.arrayContaining(["CURSOR_EXPIRED", "ROTATED_TOKEN_LOST", "PROVIDER_QUOTA_EXCEEDED", "GRANT_EXCEEDS_POLICY"]));
    expect(named.filter((reason) => !isErrorReason(reason))).toEqual([]);
    expect(reasonsInProse("answers with reason `NOT_A_REASON` (or `NEITHER`)")).toEqual(["NOT_A_REASON", "NEITHER"]);
  });

  it("document every reason a caller can receive, and none raised only at start-up or translated", () => {
    expect(clientVisible.filter((reason) => !documented.has(reason))).toEqual([]);
    const invisible = catalogue.filter(([, entry]) => hidden(entry)).map(([reason]) => reason);
    expect(invisible.filter((reason) => documented.has(reason))).toEqual([]);
  });

  it("give each reason of the complete table the status of its codes", () => {
    const complete = tables.find((table) => table.heading === "Every error reason");
    expect(complete?.rows.map((row) => row.reasons[0])).toEqual(clientVisible);
    for (const row of complete?.rows ?? []) {
      const reason = row.reasons[0];
      if (reason === undefined || !isErrorReason(reason)) continue;
      const statuses = new Set(ERROR_REASONS[reason].codes.map((code) => statusName(GRPC_CODE_BY_ERROR[code])));
      expect(row.cells[1], reason).toBe([...statuses].map((status) => `\`${status}\``).join(", "));
    }
  });
});
