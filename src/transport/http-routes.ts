/**
 * Plain HTTP routes of the HTTP listener: liveness, readiness and Prometheus metrics. Probes
 * never hang: readiness checks are bounded and report which dependency is missing.
 */
import type { HttpRequest, HttpResponse, HttpRoute } from "./http-listener.js";

export interface ReadinessCheck {
  readonly name: string;
  /** Resolves when ready; rejects with the reason when not. */
  readonly check: () => Promise<void>;
}

const READINESS_TIMEOUT_MS = 2_000;

function send(res: HttpResponse, status: number, contentType: string, body: string): void {
  res.statusCode = status;
  res.setHeader("content-type", contentType);
  res.setHeader("cache-control", "no-store");
  res.end(body);
}

export function sendJson(res: HttpResponse, status: number, value: unknown): void {
  send(res, status, "application/json; charset=utf-8", JSON.stringify(value));
}

function withTimeout(run: () => Promise<void>): Promise<void> {
  return Promise.race([
    run(),
    new Promise<void>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer within ${READINESS_TIMEOUT_MS} ms`)), READINESS_TIMEOUT_MS).unref(),
    ),
  ]);
}

export function healthzRoute(): HttpRoute {
  return (req, res, url) => {
    if (url.pathname !== "/healthz") return false;
    sendJson(res, 200, { status: "alive" });
    return true;
  };
}

export function readyzRoute(checks: readonly ReadinessCheck[]): HttpRoute {
  return async (req, res, url) => {
    if (url.pathname !== "/readyz") return false;
    const results = await Promise.all(
      checks.map(async ({ name, check }) => {
        try {
          await withTimeout(check);
          return { name, ok: true };
        } catch (error) {
          return { name, ok: false, reason: error instanceof Error ? error.message : "not ready" };
        }
      }),
    );
    const ready = results.every((r) => r.ok);
    sendJson(res, ready ? 200 : 503, { status: ready ? "ready" : "not ready", checks: results });
    return true;
  };
}

export function metricsRoute(deps: {
  render: () => Promise<{ contentType: string; body: string }>;
  /** When set, only callers this accepts may scrape. */
  authorize?: (req: HttpRequest) => Promise<boolean>;
}): HttpRoute {
  return async (req, res, url) => {
    if (url.pathname !== "/metrics") return false;
    if (deps.authorize && !(await deps.authorize(req))) {
      send(res, 401, "text/plain; charset=utf-8", "missing or invalid credentials\n");
      return true;
    }
    const { contentType, body } = await deps.render();
    send(res, 200, contentType, body);
    return true;
  };
}
