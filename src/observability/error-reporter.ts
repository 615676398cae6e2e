/**
 * Reports server faults (the calls that end `INTERNAL`) to Sentry when `SENTRY_DSN` is set.
 *
 * `@sentry/node` is imported dynamically, and only when a DSN is configured: without one nothing
 * is loaded (importing the SDK alone takes ~0.4 s) and nothing is sent. With one, the broker builds a `NodeClient` with its own scope instead of calling
 * `Sentry.init()`: no default integrations, so nothing wraps `http`, `http2` or `fetch` (the gRPC
 * hot path and the provider calls stay uninstrumented), no global `uncaughtException` /
 * `unhandledRejection` handlers change how the process exits, no console capture, and brokers
 * started side by side in one process (tests) do not share a global client. Only `linkedErrors` (the `cause` chain) and `dedupe`
 * (a fault identical to the one just sent is not sent again) are installed.
 *
 * Every event passes `beforeSend`: request data, breadcrumbs and user are dropped, secret-named
 * fields are censored and every string goes through the logger's redaction rules plus the
 * configured secrets themselves (redaction.ts). Events are capped (60 a minute by default) so a
 * fault on every call cannot turn into an event storm.
 */
import type * as SentryNode from "@sentry/node";
import type { ErrorEvent, Event } from "@sentry/node";
import type { Config } from "../config/types.js";
import type { Logger } from "./logger.js";
import { createTextRedactor, redactDeep } from "./redaction.js";
import { currentRequestContext } from "./request-context.js";

type SentryModule = typeof SentryNode;

/** What a report is tagged with; the request id and method default to the current call's. */
export interface ErrorContext {
  readonly requestId?: string | undefined;
  /** Full RPC method name, e.g. `oauthbroker.v1.TokenService/GetAccessToken`. */
  readonly method?: string | undefined;
  readonly protocol?: string | undefined;
  /** The status the caller received, as gRPC spells it (`INTERNAL`). */
  readonly grpcCode?: string | undefined;
  readonly callerKind?: string | undefined;
}

export interface ErrorReporter {
  /** Whether reports go anywhere (a DSN is configured). */
  readonly enabled: boolean;
  /** Queues a report; never throws and never waits for the network. */
  report(error: unknown, context?: ErrorContext): void;
  /** Resolves when queued reports were sent (true) or the timeout passed (false). */
  flush(timeoutMs?: number): Promise<boolean>;
  /** Flushes, then stops reporting. */
  close(timeoutMs?: number): Promise<void>;
}

export interface ErrorReporterOptions {
  /** `SENTRY_DSN`; undefined disables reporting entirely. */
  readonly dsn: string | undefined;
  readonly environment?: string | undefined;
  readonly release?: string | undefined;
  readonly logger: Logger;
  /** Configured secrets (client secrets, Vault credentials) censored wherever they appear. */
  readonly knownSecrets?: readonly string[] | undefined;
  /** Most events sent per minute; the rest are dropped (and counted in a warning). Default 60. */
  readonly maxEventsPerMinute?: number | undefined;
  /** How `@sentry/node` is imported (tests observe whether it is). */
  readonly loadSdk?: (() => Promise<SentryModule>) | undefined;
}

const DEFAULT_FLUSH_MS = 2_000;

export const disabledErrorReporter: ErrorReporter = Object.freeze({
  enabled: false,
  report: () => undefined,
  flush: async () => true,
  close: async () => undefined,
});

interface Backend {
  capture(error: unknown, tags: Record<string, string>): void;
  flush(timeoutMs: number): Promise<boolean>;
  close(timeoutMs: number): Promise<void>;
}

export function createErrorReporter(options: ErrorReporterOptions): ErrorReporter {
  const dsn = options.dsn;
  if (dsn === undefined || dsn === "") return disabledErrorReporter;
  const { logger } = options;
  const redact = createTextRedactor([...(options.knownSecrets ?? []), dsn]);
  const maxPerMinute = Math.max(1, options.maxEventsPerMinute ?? 60);
  const loadSdk = options.loadSdk ?? (() => import("@sentry/node"));

  // Loading starts now, off the start-up path, so the first fault is not the one that waits.
  const backend: Promise<Backend | undefined> = loadSdk()
    .then((sdk) => startBackend(sdk, { ...options, dsn }, redact))
    .catch((error: unknown) => {
      // Error tracking is an aid: without it the broker still serves, and faults are still logged.
      logger.error({ err: error }, "error tracking is off: @sentry/node could not be loaded or started");
      return undefined;
    });
  let closed = false;
  let windowStart = Date.now();
  let sentInWindow = 0;
  let droppedInWindow = 0;

  function admit(): boolean {
    const now = Date.now();
    if (now - windowStart >= 60_000) {
      if (droppedInWindow > 0) logger.warn({ dropped: droppedInWindow }, "error reports dropped: more than the per-minute cap");
      windowStart = now;
      sentInWindow = 0;
      droppedInWindow = 0;
    }
    if (sentInWindow >= maxPerMinute) {
      droppedInWindow += 1;
      return false;
    }
    sentInWindow += 1;
    return true;
  }

  return {
    enabled: true,
    report(error, context = {}) {
      if (closed || !admit()) return;
      const tags = tagsOf(context);
      void backend.then((ready) => {
        try {
          ready?.capture(error, tags);
        } catch (captureError) {
          logger.warn({ err: captureError }, "an error report could not be built");
        }
      });
    },
    async flush(timeoutMs = DEFAULT_FLUSH_MS) {
      const ready = await backend;
      return ready === undefined ? true : ready.flush(timeoutMs);
    },
    async close(timeoutMs = DEFAULT_FLUSH_MS) {
      if (closed) return;
      closed = true;
      const ready = await backend;
      await ready?.close(timeoutMs);
    },
  };
}

function tagsOf(context: ErrorContext): Record<string, string> {
  const current = currentRequestContext();
  const entries: Array<[string, string | undefined]> = [
    ["request_id", context.requestId ?? current?.requestId],
    ["rpc.method", context.method ?? current?.method],
    ["rpc.protocol", context.protocol],
    ["grpc.code", context.grpcCode],
    ["caller.kind", context.callerKind],
    ["job", current?.job],
  ];
  const tags: Record<string, string> = {};
  for (const [key, value] of entries) if (value !== undefined && value !== "") tags[key] = value;
  return tags;
}

function startBackend(sdk: SentryModule, options: ErrorReporterOptions & { dsn: string }, redact: (text: string) => string): Backend {
  const client = new sdk.NodeClient({
    dsn: options.dsn,
    environment: options.environment,
    release: options.release,
    transport: sdk.makeNodeTransport,
    stackParser: sdk.defaultStackParser,
    integrations: [sdk.linkedErrorsIntegration(), sdk.dedupeIntegration()],
    // Load-time module rewriting, the client-report interval and span streaming serve tracing and
    // instrumentation the broker does not use (no `tracesSampleRate`: no spans are made).
    enableRuntimeChannelInjection: false,
    sendClientReports: false,
    traceLifecycle: "static",
    maxBreadcrumbs: 0,
    dataCollection: {
      userInfo: false,
      cookies: false,
      httpHeaders: false,
      httpBodies: [],
      urlQueryParams: false,
      databaseQueryData: false,
      stackFrameVariables: false,
    },
    beforeBreadcrumb: () => null,
    beforeSend: (event) => scrubEvent(event, redact),
  });
  const scope = new sdk.Scope();
  scope.setClient(client);
  client.init();
  return {
    capture(error, tags) {
      const callScope = scope.clone();
      callScope.setTags(tags);
      callScope.setLevel("error");
      // Through the scope: it passes the error itself along, which linkedErrors needs to walk `cause`.
      callScope.captureException(error, { mechanism: { type: "oauth-broker.rpc", handled: true } });
    },
    flush: (timeoutMs) => Promise.resolve(client.flush(timeoutMs)),
    async close(timeoutMs) {
      await client.close(timeoutMs);
    },
  };
}

/**
 * The event as it may leave the process: no request, breadcrumbs, user or frame variables, and
 * every remaining string redacted. Exported for its unit test.
 */
export function scrubEvent<E extends Event = ErrorEvent>(event: E, redact: (text: string) => string): E {
  const { request: _request, breadcrumbs: _breadcrumbs, user: _user, sdkProcessingMetadata, ...rest } = event;
  for (const exception of rest.exception?.values ?? []) {
    for (const frame of exception.stacktrace?.frames ?? []) delete frame.vars;
  }
  const scrubbed = redactDeep(rest, redact) as E;
  // SDK bookkeeping stripped before sending; it may hold live objects (scopes) a deep copy would break.
  if (sdkProcessingMetadata !== undefined) {
    const { normalizedRequest: _normalizedRequest, ...metadata } = sdkProcessingMetadata;
    scrubbed.sdkProcessingMetadata = metadata;
  }
  return scrubbed;
}

/** The configured secret values, for exact-match redaction (they have no recognisable shape). */
export function configuredSecrets(config: Pick<Config, "providers" | "vault" | "databaseUrl">): string[] {
  const secrets: string[] = [];
  for (const provider of config.providers) if (provider.clientSecret !== undefined) secrets.push(provider.clientSecret.reveal());
  if (config.vault?.token !== undefined) secrets.push(config.vault.token.reveal());
  if (config.vault?.secretId !== undefined) secrets.push(config.vault.secretId.reveal());
  if (config.databaseUrl !== undefined) {
    try {
      const password = decodeURIComponent(new URL(config.databaseUrl.reveal()).password);
      if (password !== "") secrets.push(password);
    } catch {
      // The loader refuses a DATABASE_URL that is not a URL; nothing to add.
    }
  }
  return secrets;
}
