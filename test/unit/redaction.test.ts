/** The shared redaction rules, as the logger and the error reporter apply them. */
import { describe, expect, it } from "vitest";
import type { ErrorEvent } from "@sentry/node";
import { createSecret } from "../../src/config/secret.js";
import { configuredSecrets, scrubEvent } from "../../src/observability/error-reporter.js";
import { createTextRedactor, redactDeep, redactText } from "../../src/observability/redaction.js";
import { runWithRequestContext } from "../../src/observability/request-context.js";
import { captureLogger } from "../support/log-capture.js";
import { testProviderConfig } from "../support/peers/provider-config.js";

describe("redactText", () => {
  it.each([
    ["Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "Authorization: Bearer [redacted]"],
    ["Basic YnJva2VyLWNsaWVudDpzM2NyM3Q=", "Basic [redacted]"],
    ["jwt eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.MEUCIQ", "jwt [redacted]"],
    ["GET /cb?code=abc123&state=xyz", "GET /cb?code=[redacted]&state=xyz"],
    ["grant_type=refresh_token&refresh_token=rt-1&client_secret=cs-2", "grant_type=refresh_token&refresh_token=[redacted]&client_secret=[redacted]"],
    ["access_token=at-1; code_verifier=cv-2", "access_token=[redacted]; code_verifier=[redacted]"],
    ['{"access_token": "at-9", "expires_in": 3600}', '{"access_token": "[redacted]", "expires_in": 3600}'],
    ["vault said no to hvs.CAESIJabcdefghijklmnopqrstuv", "vault said no to [redacted]"],
    ["legacy token s.AbCdEfGhIjKlMnOpQrStUvWx refused", "legacy token [redacted] refused"],
    ["google GOCSPX-abcdefghijklmnopqrstuvwx01", "google [redacted]"],
    ["entra abc8Q~abcdefghijklmnopqrstuvwxyz012345", "entra [redacted]"],
    ["postgres://broker:hunter2-password@db:5432/broker", "postgres://broker:[redacted]@db:5432/broker"],
  ])("%s", (input, expected) => {
    expect(redactText(input)).toBe(expected);
  });

  it("leaves ordinary text alone, including look-alike parameter names", () => {
    for (const text of [
      "bearer token is too long",
      "error_code=invalid_grant grpc_code=INTERNAL",
      "the state machine moved on",
      "integration 7b0c2a4e-1f3d-4c5b-9a8e-0d1c2b3a4f5e not found",
      "this.session expired",
    ]) {
      expect(redactText(text)).toBe(text);
    }
  });

  it("also censors configured secrets that have no recognisable shape", () => {
    const redact = createTextRedactor(["plain-looking-client-secret", "short"]);
    expect(redact("client rejected: plain-looking-client-secret; short stays")).toBe("client rejected: [redacted]; short stays");
  });

  it("collects the configured secrets: client secrets, Vault credentials, the database password", () => {
    expect(
      configuredSecrets({
        providers: [testProviderConfig({ id: "g", kind: "google", clientSecret: "provider-secret" }), testProviderConfig({ id: "n", kind: "notion" })],
        vault: {
          address: "https://vault",
          token: createSecret("vault-token-value"),
          roleId: undefined,
          secretId: createSecret("secret-id-value"),
          kubernetesRole: undefined,
          kubernetesTokenPath: "",
          namespace: undefined,
          mount: "transit",
          key: "k",
          createKey: false,
          timeoutMs: 1,
        },
        databaseUrl: createSecret("postgres://broker:p%40ssword@db/broker"),
      }),
    ).toEqual(["provider-secret", "vault-token-value", "secret-id-value", "p@ssword"]);
  });
});

describe("redactDeep", () => {
  it("censors secret-named fields at any depth and redacts every string, without touching the input", () => {
    const input = { headers: { Authorization: "x", accept: "json" }, list: [{ refresh_token: "r" }, "code=abc"], n: 1 };
    expect(redactDeep(input)).toEqual({
      headers: { Authorization: "[redacted]", accept: "json" },
      list: [{ refresh_token: "[redacted]" }, "code=[redacted]"],
      n: 1,
    });
    expect(input.list[1]).toBe("code=abc");
  });

  it("survives cycles", () => {
    const cyclic: Record<string, unknown> = { name: "a" };
    cyclic["self"] = cyclic;
    expect(redactDeep(cyclic)).toEqual({ name: "a", self: "[redacted]" });
  });
});

describe("scrubEvent", () => {
  it("drops request data, breadcrumbs, user and frame variables, and redacts the rest", () => {
    const event: ErrorEvent = {
      type: undefined,
      message: "failed with access_token=at-1",
      request: { url: "https://broker/cb?code=c", headers: { authorization: "Bearer x" }, cookies: { s: "1" }, data: "code=c" },
      breadcrumbs: [{ message: "GET https://provider/token?code=c" }],
      user: { id: "alice", ip_address: "10.0.0.1" },
      tags: { request_id: "req-1" },
      extra: { body: '{"refresh_token":"rt-1"}', clientSecret: "cs" },
      exception: {
        values: [
          {
            type: "Error",
            value: "refresh_token=rt-2",
            stacktrace: { frames: [{ filename: "a.js", vars: { token: "t", plain: "p" } }] },
          },
        ],
      },
      sdkProcessingMetadata: { normalizedRequest: { headers: { authorization: "Bearer x" } }, other: 1 },
    };
    const scrubbed = scrubEvent(event, redactText);
    expect(scrubbed.request).toBeUndefined();
    expect(scrubbed.breadcrumbs).toBeUndefined();
    expect(scrubbed.user).toBeUndefined();
    expect(scrubbed.message).toBe("failed with access_token=[redacted]");
    expect(scrubbed.tags).toEqual({ request_id: "req-1" });
    expect(scrubbed.extra).toEqual({ body: '{"refresh_token":"[redacted]"}', clientSecret: "[redacted]" });
    expect(scrubbed.exception?.values?.[0]?.value).toBe("refresh_token=[redacted]");
    expect(scrubbed.exception?.values?.[0]?.stacktrace?.frames?.[0]).toEqual({ filename: "a.js" });
    expect(scrubbed.sdkProcessingMetadata).toEqual({ other: 1 });
  });
});

describe("the logger", () => {
  it("redacts credentials in logged errors and their causes", () => {
    const { logger, log } = captureLogger();
    logger.error({ err: new Error("token endpoint said no to code=abc", { cause: new Error("refresh_token=rt-1") }) }, "failed");
    const text = log.text();
    expect(text).not.toContain("abc");
    expect(text).not.toContain("rt-1");
    expect(text).toContain("code=[redacted]");
  });

  it("adds the current request id (and job) to every line, and nothing outside a context", () => {
    const { logger, log } = captureLogger();
    logger.info("outside");
    runWithRequestContext({ requestId: "req-9" }, () => logger.child({ part: "x" }).info("inside"));
    runWithRequestContext({ requestId: "job-run-1", job: "cleanup" }, () => logger.info("job"));
    // A line's own requestId wins over the context's.
    runWithRequestContext({ requestId: "req-9" }, () => logger.info({ requestId: "explicit" }, "own"));
    const [outside, inside, job, own] = log.lines;
    expect(outside).not.toHaveProperty("requestId");
    expect(inside).toMatchObject({ requestId: "req-9", part: "x" });
    expect(job).toMatchObject({ requestId: "job-run-1", job: "cleanup" });
    expect(own).toMatchObject({ requestId: "explicit" });
    expect(JSON.stringify(own).match(/requestId/g)).toHaveLength(1);
  });
});
