/**
 * Without SENTRY_DSN the broker neither sends anything nor loads `@sentry/node`: a server fault
 * only reaches the log. The module import is counted through a mock that delegates to the real
 * module; the last test shows the count does move when a DSN is set, so a zero means something.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Code, createClient, type ServiceImpl } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { loadConfig } from "../../src/config/load-config.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { createErrorReporter } from "../../src/observability/error-reporter.js";
import { bindService } from "../../src/transport/service-binding.js";
import { startSentryIngest, type SentryIngest } from "../support/sentry-ingest.js";
import { captureLogger } from "../support/log-capture.js";
import { startTransportFixture } from "../support/transport-fixture.js";

const sdk = vi.hoisted(() => ({ loads: 0 }));
vi.mock("@sentry/node", async (importOriginal) => {
  sdk.loads += 1;
  return importOriginal();
});

const failing: ServiceImpl<typeof ProviderService> = {
  listProviders() {
    throw new Error("database answered nonsense");
  },
};

let ingest: SentryIngest;
beforeAll(async () => {
  ingest = await startSentryIngest();
});
afterAll(async () => {
  await ingest?.close();
});

describe("error tracking with SENTRY_DSN unset", () => {
  it("sends nothing and never loads @sentry/node, while the fault is still logged", async () => {
    const config = loadConfig({ env: { SENTRY_DSN: "" } });
    expect(config.sentryDsn).toBeUndefined();
    const { logger } = captureLogger();
    const reporter = createErrorReporter({ dsn: config.sentryDsn?.reveal(), logger });
    expect(reporter.enabled).toBe(false);

    const fixture = await startTransportFixture({ bindings: [bindService(ProviderService, failing)], errorReporter: reporter });
    try {
      const client = createClient(ProviderService, createConnectTransport({ baseUrl: fixture.httpUrl, httpVersion: "1.1" }));
      await expect(client.listProviders({})).rejects.toMatchObject({ code: Code.Internal });
      await reporter.flush();
      await reporter.close();
      expect(fixture.log.lines.some((line) => line["msg"] === "rpc failed" && line["grpcCode"] === "INTERNAL")).toBe(true);
    } finally {
      await fixture.close();
    }
    // Nothing to wait for: flush() and close() settle only after a loaded SDK has been imported
    // and what it sent has been answered, which the ingest does after recording it (the control
    // below sees its load right after close()).
    expect(ingest.envelopes).toEqual([]);
    expect(sdk.loads).toBe(0);
  });

  it("(control) loads the SDK once a DSN is set", async () => {
    const { logger } = captureLogger();
    const reporter = createErrorReporter({ dsn: ingest.dsn, logger });
    await reporter.close(1_000);
    expect(sdk.loads).toBe(1);
  });
});
