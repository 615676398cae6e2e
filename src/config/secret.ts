/** Secrets that cannot print: logs, JSON and `util.inspect` all show "[redacted]". */
import { inspect } from "node:util";
import type { Secret } from "./types.js";

const REDACTED = "[redacted]";

export function createSecret(value: string): Secret {
  const secret = {
    reveal: () => value,
    toString: () => REDACTED,
    toJSON: () => REDACTED,
    [inspect.custom]: () => REDACTED,
  };
  return Object.freeze(secret);
}
