/**
 * The broker's logger. Every secret-bearing field name is redacted wherever it appears, so a
 * token that slips into a logged object is censored rather than written out; logged errors also
 * have credential-looking text in their messages censored (redaction.ts, shared with the error
 * reporter). Every line written while a call or a background job runs carries its `requestId`
 * (request-context.ts), so domain code never has to pass the id to the logger. No line carries
 * more than `MAX_LOGGED_VALUE_CHARS` of any one value (truncation.ts): a caller's 5 MB user id
 * is logged as its first kilobyte and its length.
 */
import { destination, pino, stdSerializers, type DestinationStream, type Logger } from "pino";
import { redactText, SECRET_KEYS } from "./redaction.js";
import { currentRequestContext } from "./request-context.js";
import { MAX_LOGGED_VALUE_CHARS, truncateDeep, truncateText } from "./truncation.js";

export type { Logger } from "pino";

/** Secret field names at any depth up to three levels. */
const REDACT_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

/** Censors message and stack of a serialized error and of its serialized causes. */
function redactSerializedError(error: Record<string, unknown>, depth = 0): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...error };
  const message = copy["message"];
  const stack = copy["stack"];
  if (typeof message === "string" && message.length > MAX_LOGGED_VALUE_CHARS) {
    const cut = truncateText(message, MAX_LOGGED_VALUE_CHARS);
    copy["message"] = cut;
    // The stack's first line repeats the message.
    if (typeof stack === "string") copy["stack"] = stack.replace(message, cut);
  }
  for (const field of ["message", "stack"]) {
    const text = copy[field];
    if (typeof text === "string") copy[field] = redactText(truncateText(text, 8 * MAX_LOGGED_VALUE_CHARS));
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

/**
 * Where `npm start` writes its lines (stdout), or any file descriptor or path: pino's
 * asynchronous SonicBoom, as pino's default, but fed buffers. Fed strings, SonicBoom measures the
 * UTF-8 length of its whole pending chunk (up to 16 KB) on every line, which flattens and copies
 * that chunk each time: about 8 KB allocated per line once lines arrive faster than the disk
 * takes them, the largest allocation of a warm GetAccessToken (a heap-sampling profile under the
 * load of bench/warm-path.ts). In buffer mode it appends each line and copies the chunk once,
 * when it writes it.
 */
export function logDestination(dest: number | string = process.stdout.fd): DestinationStream & { flush(done?: (error?: Error) => unknown): void } {
  // SonicBoom's typings know only its string mode.
  const stream = destination({ dest, sync: false, minLength: 0, contentMode: "buffer" }) as unknown as ReturnType<typeof destination> & {
    write(line: Buffer): boolean;
  };
  return {
    // Looked up at every line: on EPIPE pino replaces the stream's `write` with a no-op, and a
    // `write` kept from before would go on piling lines up in memory for a reader that is gone.
    write: (line: string) => stream.write(Buffer.from(line)),
    // pino's `logger.flush(done)` calls this; on exit pino flushes the stream synchronously itself.
    flush: (done) => stream.flush(done),
  };
}

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "oauth-broker" },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      serializers: { err: serializeError },
      formatters: { log: (object) => truncateDeep(object, MAX_LOGGED_VALUE_CHARS) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          const cut = args.map((arg) => (typeof arg === "string" ? truncateText(arg, MAX_LOGGED_VALUE_CHARS) : arg));
          method.apply(this, cut as Parameters<typeof method>);
        },
      },
      mixin: requestFields,
    },
    options.destination ?? logDestination(),
  );
}
