/**
 * The broker's own logger (redaction and all) writing into memory, so a test can read what an
 * operator would see: the parsed lines, or the raw text to search for a secret that must not be
 * there.
 */
import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/observability/logger.js";

export interface CapturedLog {
  readonly lines: Array<Record<string, unknown>>;
  readonly text: () => string;
}

export function captureLogger(level = "debug"): { logger: Logger; log: CapturedLog } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString("utf8"));
      callback();
    },
  });
  const logger = createLogger({ level, destination });
  return {
    logger,
    log: {
      get lines() {
        return chunks
          .join("")
          .split("\n")
          .filter(Boolean)
          .map((line) => JSON.parse(line) as Record<string, unknown>);
      },
      text: () => chunks.join(""),
    },
  };
}
