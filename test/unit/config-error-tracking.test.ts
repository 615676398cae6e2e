/** SENTRY_DSN and SENTRY_ENVIRONMENT: read once, checked at start-up, the DSN never printed. */
import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/load-config.js";

function load(env: Record<string, string>) {
  return loadConfig({ env, readFile: () => JSON.stringify({ version: "1.0.0" }) });
}

function problems(env: Record<string, string>): readonly string[] {
  try {
    load(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("error tracking settings", () => {
  it("is off by default", () => {
    const config = load({});
    expect(config.sentryDsn).toBeUndefined();
    expect(config.sentryEnvironment).toBeUndefined();
  });

  it("reads the DSN as a secret and the environment as given", () => {
    const config = load({ SENTRY_DSN: "https://0123abcd@o1.ingest.sentry.io/42", SENTRY_ENVIRONMENT: "staging-eu" });
    expect(config.sentryDsn?.reveal()).toBe("https://0123abcd@o1.ingest.sentry.io/42");
    expect(config.sentryEnvironment).toBe("staging-eu");
    expect(`${JSON.stringify(config)} ${inspect(config, { depth: Infinity })}`).not.toContain("0123abcd");
  });

  it("refuses a URL that is not a DSN, without quoting it", () => {
    expect(problems({ SENTRY_DSN: "https://o1.ingest.sentry.io/42" })).toEqual([
      "SENTRY_DSN: must be a Sentry DSN, http(s)://<public key>@<host>/<project id> (value not shown)",
    ]);
    expect(problems({ SENTRY_DSN: "https://key@o1.ingest.sentry.io/" })).toHaveLength(1);
  });

  it("refuses an environment Sentry would not accept", () => {
    expect(problems({ SENTRY_ENVIRONMENT: "prod/eu" })).toEqual([
      "SENTRY_ENVIRONMENT: must be at most 64 characters without spaces or slashes (Sentry's rule for environments)",
    ]);
    expect(problems({ SENTRY_ENVIRONMENT: "x".repeat(65) })).toHaveLength(1);
  });
});
