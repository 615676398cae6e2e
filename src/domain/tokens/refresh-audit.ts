/**
 * The one audit event every refresh leaves, by a caller or the proactive refresher:
 * `token.refreshed`, or `token.refresh_failed` with the reason the caller got.
 */
import { randomUUID } from "node:crypto";
import { isBrokerError } from "../errors.js";
import { auditCaller, auditSubject, type AuditLog, type Logger } from "../ports.js";
import type { Integration, RequestContext } from "../types.js";

/** Why a refresh ran; recorded in its audit event. */
export type RefreshTrigger = "expiring" | "forced" | "proactive";

/** Who a refresh ran for: the caller its audit event names (the broker itself for the refresher). */
export interface RefreshCaller {
  readonly caller: string;
  readonly callerKind: string;
  readonly requestId: string;
  readonly peer: string | undefined;
  readonly trigger: RefreshTrigger;
}

export function refreshCallerOf(ctx: RequestContext | undefined, trigger: RefreshTrigger): RefreshCaller {
  if (ctx) return { ...auditCaller(ctx), trigger };
  // The refresher has no request: a fresh id still ties the event to this replica's log lines.
  return { caller: trigger === "proactive" ? "proactive-refresh" : "broker", callerKind: "system", requestId: randomUUID(), peer: undefined, trigger };
}

export interface RefreshAudit {
  /** `token.refreshed`; rejects when the event cannot be written (the caller decides what that costs). */
  refreshed(integration: Integration, by: RefreshCaller, details: Record<string, string>): Promise<void>;
  /**
   * `token.refresh_failed` with `failure` (a reason, or the error whose reason it is). Never
   * rejects: a failure's event must not replace the failure the caller is about to get.
   */
  failed(integration: Integration, by: RefreshCaller, failure: unknown, details?: Record<string, string>): Promise<void>;
  /** `failed` with the reason the caller gets; for a refused grant, the provider's own error goes along. */
  failedWith(integration: Integration, by: RefreshCaller, error: unknown): Promise<void>;
}

export function createRefreshAudit(deps: { readonly audit: AuditLog | undefined; readonly logger: Logger }): RefreshAudit {
  const { audit, logger } = deps;

  function record(integration: Integration, by: RefreshCaller, failure: string | undefined, details: Record<string, string>): Promise<void> {
    return (
      audit?.record({
        action: failure === undefined ? "token.refreshed" : "token.refresh_failed",
        outcome: failure === undefined ? "success" : "failure",
        reason: failure,
        ...auditSubject(integration),
        caller: by.caller,
        callerKind: by.callerKind,
        requestId: by.requestId,
        peer: by.peer,
        details: { trigger: by.trigger, ...details },
      }) ?? Promise.resolve()
    );
  }

  const failed: RefreshAudit["failed"] = async (integration, by, failure, details = {}) => {
    const reason = typeof failure === "string" ? failure : isBrokerError(failure) ? failure.reason : "INTERNAL";
    await record(integration, by, reason, details).catch((e: unknown) =>
      logger.error({ err: e, integrationId: integration.id }, "the audit event of a failed refresh could not be written"),
    );
  };

  return {
    refreshed: (integration, by, details) => record(integration, by, undefined, details),
    failed,
    failedWith(integration, by, error) {
      if (!isBrokerError(error, "integration_needs_reauth")) return failed(integration, by, error);
      return failed(integration, by, "INTEGRATION_NEEDS_REAUTH", { cause: (error.metadata["error"] ?? error.reason).toLowerCase() });
    },
  };
}
