/**
 * The broker's logger. Every secret-bearing field name is redacted wherever it appears, so a
 * token that slips into a logged object is censored rather than written out.
 */
import { pino, stdSerializers, type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

/** Field names that may carry secrets, at any depth up to three levels. */
const SECRET_KEYS = [
  "access_token",
  "accessToken",
  "refresh_token",
  "refreshToken",
  "id_token",
  "idToken",
  "client_secret",
  "clientSecret",
  "code_verifier",
  "codeVerifier",
  "state",
  "token",
  "password",
  "secret",
  "secretId",
  "secret_id",
  "authorization",
  "cookie",
  "set-cookie",
  "x-vault-token",
  "plaintext",
  "ciphertext",
];

const REDACT_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "oauth-broker" },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      serializers: { err: stdSerializers.errWithCause },
    },
    options.destination,
  );
}
