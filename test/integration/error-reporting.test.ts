/**
 * Server faults reach Sentry — a real local HTTP server plays the ingestion endpoint — tagged
 * with the call's request id and method, and without any of the secrets planted in the error's
 * message and cause. Closing the reporter (the broker's shutdown) sends what is still queued.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type ServiceImpl } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { BrokerError } from "../../src/domain/errors.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { createErrorReporter, type ErrorReporter } from "../../src/observability/error-reporter.js";
import { bindService } from "../../src/transport/service-binding.js";
import { startSentryIngest, type SentryIngest } from "../support/sentry-ingest.js";
import { captureLogger } from "../support/log-capture.js";
import { startTransportFixture, type TransportFixture } from "../support/transport-fixture.js";

const CONFIGURED_SECRET = "configured-client-secret-value-1234";
/** Each planted where a careless error might carry it; none may reach the ingestion endpoint. */
const SECRETS = {
  bearer: "abcdefghijklmnopqrstuvwxyz0123456789",
  jwt: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA",
  accessToken: "at-secret-123456",
  refreshToken: "rt-secret-abcdef",
  code: "authcode-xyz-98765",
  codeVerifier: "verifier-secret-000111",
  jsonAccessToken: "json-at-secret-777",
  vaultToken: "hvs.CAESIJ1234567890abcdefghijklmnopqrstuv",
  legacyVaultToken: "s.AbCdEfGhIjKlMnOpQrStUvWx",
  googleSecret: "GOCSPX-abcdefghijklmnopqrstuvwxyz12",
  configured: CONFIGURED_SECRET,
};

function plantedFault(): Error {
  const cause = new Error(
    `token endpoint answered 500 for refresh_token=${SECRETS.refreshToken}&client_secret=${SECRETS.configured}: ` +
      `{"access_token":"${SECRETS.jsonAccessToken}","token_type":"Bearer"} (vault token ${SECRETS.legacyVaultToken})`,
  );
  return new Error(
    `refresh failed: Authorization: Bearer ${SECRETS.bearer}; id_token ${SECRETS.jwt}; ` +
      `GET /cb?code=${SECRETS.code}&code_verifier=${SECRETS.codeVerifier}&access_token=${SECRETS.accessToken} ` +
      `X-Vault-Token: ${SECRETS.vaultToken} secret ${SECRETS.googleSecret}`,
    { cause },
  );
}

const failing: ServiceImpl<typeof ProviderService> = {
  listProviders() {
    throw plantedFault();
  },
};

let ingest: SentryIngest;
beforeAll(async () => {
  ingest = await startSentryIngest();
});
afterAll(async () => {
  await ingest?.close();
});

describe("error tracking with SENTRY_DSN set", () => {
  let fixture: TransportFixture | undefined;
  let reporter: ErrorReporter | undefined;
  afterEach(async () => {
    await fixture?.close();
    await reporter?.close();
    fixture = undefined;
    reporter = undefined;
    ingest.clear();
  });

  it("reports an INTERNAL fault tagged with request id and method, with every secret scrubbed", async () => {
    const { logger } = captureLogger();
    reporter = createErrorReporter({ dsn: ingest.dsn, environment: "test", release: "9.9.9", logger, knownSecrets: [CONFIGURED_SECRET] });
    fixture = await startTransportFixture({ bindings: [bindService(ProviderService, failing)], errorReporter: reporter });
    const client = createClient(ProviderService, createConnectTransport({ baseUrl: fixture.httpUrl, httpVersion: "1.1" }));

    const failure = await client.listProviders({}, { headers: { "x-request-id": "req-sentry-1" } }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    expect(failure?.code).toBe(Code.Internal);
    expect(failure?.rawMessage).toBe("internal error");

    expect(await reporter.flush(5_000)).toBe(true);
    const [event] = await ingest.waitForEvents(1);
    expect(event?.["tags"]).toMatchObject({
      request_id: "req-sentry-1",
      "rpc.method": "oauthbroker.v1.ProviderService/ListProviders",
      "grpc.code": "INTERNAL",
    });
    expect(event).toMatchObject({ environment: "test", release: "9.9.9", level: "error" });
    expect(event?.["request"]).toBeUndefined();
    expect(event?.["breadcrumbs"]).toBeUndefined();

    // The fault and its cause both arrive (linked errors), still readable, minus the secrets.
    const exceptions = (event?.["exception"] as { values: Array<{ value: string }> }).values.map((e) => e.value);
    expect(exceptions).toHaveLength(2);
    expect(exceptions.join("\n")).toContain("refresh_token=[redacted]");
    expect(exceptions.join("\n")).toContain("Bearer [redacted]");
    expect(exceptions.join("\n")).toContain('"access_token":"[redacted]"');

    const raw = ingest.envelopes.map((envelope) => envelope.raw).join("\n");
    for (const [name, secret] of Object.entries(SECRETS)) {
      expect(raw.includes(secret), `${name} reached the ingestion endpoint`).toBe(false);
    }
  });

  it("does not report what the caller caused (a BrokerError that is not INTERNAL)", async () => {
    const { logger } = captureLogger();
    reporter = createErrorReporter({ dsn: ingest.dsn, logger });
    const refusing: ServiceImpl<typeof ProviderService> = {
      listProviders() {
        throw new BrokerError("invalid_argument", "bad request");
      },
    };
    fixture = await startTransportFixture({ bindings: [bindService(ProviderService, refusing)], errorReporter: reporter });
    const client = createClient(ProviderService, createConnectTransport({ baseUrl: fixture.httpUrl, httpVersion: "1.1" }));
    await expect(client.listProviders({})).rejects.toMatchObject({ code: Code.InvalidArgument });
    await reporter.flush(5_000);
    expect(ingest.events()).toEqual([]);
  });

  it("sends what is still queued when closed at shutdown", async () => {
    const { logger } = captureLogger();
    const closing = createErrorReporter({ dsn: ingest.dsn, logger });
    closing.report(new Error("fault just before shutdown"), { requestId: "req-shutdown", method: "oauthbroker.v1.TokenService/GetAccessToken" });
    await closing.close(5_000);
    const events = ingest.events();
    expect(events).toHaveLength(1);
    expect(events[0]?.["tags"]).toMatchObject({ request_id: "req-shutdown" });
    // Closed: later faults are dropped rather than queued forever.
    closing.report(new Error("after close"));
    await closing.flush(1_000);
    expect(ingest.events()).toHaveLength(1);
  });
});
