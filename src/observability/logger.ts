/**
 * The broker's logger. Every secret-bearing field name is redacted wherever it appears, so a
 * token that slips into a logged object is censored rather than written out; logged errors also
 * have credential-looking text in their messages censored (redaction.ts, shared with the error
 * reporter). Every line written while a call or a background job runs carries its `requestId`
 * (request-context.ts), so domain code never has to pass the id to the logger.
 */
import { pino, stdSerializers, type DestinationStream, type Logger } from "pino";
import { redactText, SECRET_KEYS } from "./redaction.js";
import { currentRequestContext } from "./request-context.js";

export type { Logger } from "pino";

/** Secret field names at any depth up to three levels. */
const REDACT_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

/** Censors message and stack of a serialized error and of its serialized causes. */
function redactSerializedError(error: Record<string, unknown>, depth = 0): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...error };
  for (const field of ["message", "stack"]) {
    const text = copy[field];
    if (typeof text === "string") copy[field] = redactText(text);
  }
  const cause = copy["cause"];
  if (depth < 8 && typeof cause === "object" && cause !== null) {
    copy["cause"] = redactSerializedError(cause as Record<string, unknown>, depth + 1);
  }
  return copy;
}

function serializeError(error: unknown): unknown {
  const serialized: unknown = stdSerializers.errWithCause(error as Error);
  if (typeof serialized !== "object" || serialized === null) return serialized;
  return redactSerializedError(serialized as Record<string, unknown>);
}

/** A fresh object per line: pino merges the line's own fields into it. */
function requestFields(): Record<string, string> {
  const context = currentRequestContext();
  if (context === undefined) return {};
  return context.job === undefined ? { requestId: context.requestId } : { requestId: context.requestId, job: context.job };
}

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "oauth-broker" },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      serializers: { err: serializeError },
      mixin: requestFields,
    },
    options.destination,
  );
}
