/**
 * `GET /oauth/callback/<provider>`: where providers send the browser back. The flow itself is
 * in `domain/authorization-service.ts`; this route reads the query and the binding cookie and
 * answers with a 303 to the app's `return_to` carrying `integration_id` + `status=connected` or
 * `error=<code>` — never a token, code or state. Without a session there is no trusted
 * `return_to`, so the answer is a small self-contained error page. Every answer is
 * `Cache-Control: no-store` and `Referrer-Policy: no-referrer` (oauth-client-security.md §5): the
 * callback URL holds the code and state, and must not leak through a cache or a Referer header.
 */
import { randomUUID } from "node:crypto";
import {
  flowCookieName,
  type AuthorizationService,
  type BrowserBinding,
  type CallbackOutcome,
} from "../domain/authorization-service.js";
import type { Logger } from "../observability/logger.js";
import { runWithRequestContext } from "../observability/request-context.js";
import type { HttpRequest, HttpResponse, HttpRoute } from "./http-listener.js";

export interface OAuthCallbackRouteDeps {
  readonly service: Pick<AuthorizationService, "handleCallback">;
  /** The broker's external base URL: its path (if any) prefixes the callback path. */
  readonly publicUrl: URL;
  readonly logger: Logger;
}

const CALLBACK_PATH = "/oauth/callback/";
const ACCEPTABLE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const ERROR_TITLES: Record<"invalid_state" | "server_error", string> = {
  invalid_state: "This sign-in link is no longer valid",
  server_error: "The account could not be connected",
};

/** The `Set-Cookie` value that binds a flow to the browser that started it. */
export function formatFlowCookie(binding: BrowserBinding): string {
  return [
    `${binding.cookieName}=${binding.value}`,
    "HttpOnly",
    "SameSite=Lax",
    `Path=${binding.path}`,
    `Max-Age=${binding.maxAgeSeconds}`,
    ...(binding.secure ? ["Secure"] : []),
  ].join("; ");
}

/** Expires the binding cookie: it has served its one flow. */
export function clearFlowCookie(provider: string, path: string, secure: boolean): string {
  return formatFlowCookie({ cookieName: flowCookieName(provider), value: "", path, maxAgeSeconds: 0, secure });
}

/** The value of one cookie from a `Cookie` header (RFC 6265 §5.4). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(";")) {
    const index = pair.indexOf("=");
    if (index < 0) continue;
    if (pair.slice(0, index).trim() === name) {
      const value = pair.slice(index + 1).trim();
      return value === "" ? undefined : value;
    }
  }
  return undefined;
}

export function createOAuthCallbackRoute(deps: OAuthCallbackRouteDeps): HttpRoute {
  const basePath = deps.publicUrl.pathname.replace(/\/+$/, "");
  const prefixes = [...new Set([CALLBACK_PATH, `${basePath}${CALLBACK_PATH}`])];
  const secure = deps.publicUrl.protocol === "https:";
  const logger = deps.logger.child({ component: "oauth-callback" });

  return async (req, res, url) => {
    const prefix = prefixes.find((p) => url.pathname.startsWith(p));
    if (prefix === undefined) return false;
    const segment = url.pathname.slice(prefix.length);
    setCommonHeaders(res);
    const provider = decodeSegment(segment);
    if (provider === undefined) {
      sendErrorPage(res, 404, "invalid_state");
      return true;
    }
    // Only GET: a HEAD from a link scanner must not use up the one-time state.
    if (req.method !== "GET") {
      res.setHeader("allow", "GET");
      sendErrorPage(res, 405, "invalid_state");
      return true;
    }
    const requestId = requestIdOf(req);
    res.setHeader("x-request-id", requestId);
    let outcome: CallbackOutcome;
    try {
      // The code exchange at the provider and the Vault calls carry this id, as an RPC's do.
      outcome = await runWithRequestContext({ requestId }, () =>
        deps.service.handleCallback({
          provider,
          query: url.searchParams,
          binding: readCookie(headerValue(req.headers["cookie"]), flowCookieName(provider)),
          requestId,
          peer: peerOf(req),
        }),
      );
    } catch (error) {
      logger.error({ requestId, provider, err: error }, "authorization callback failed");
      sendErrorPage(res, 500, "server_error");
      return true;
    }
    log(logger, outcome, { requestId, provider });
    // Only the callback that used up the cookie's own session expires it: a replayed, forged or
    // foreign callback (a third party can send the browser to any state) leaves a flow in
    // progress alone. The path is the one the cookie was set for (the redirect URI's), even
    // behind a prefix-stripping proxy.
    if (outcome.kind !== "rejected" && outcome.consumedBinding) {
      res.setHeader("set-cookie", clearFlowCookie(provider, `${basePath}${CALLBACK_PATH}${encodeURIComponent(provider)}`, secure));
    }
    if (outcome.kind === "rejected") {
      sendErrorPage(res, outcome.code === "invalid_state" ? 400 : 500, outcome.code);
      return true;
    }
    res.statusCode = 303;
    res.setHeader("location", outcome.location);
    res.end();
    return true;
  };
}

function log(logger: Logger, outcome: CallbackOutcome, fields: { requestId: string; provider: string }): void {
  if (outcome.kind === "connected") {
    logger.info({ ...fields, integrationId: outcome.integration.id, userId: outcome.integration.userId }, "account connected");
    return;
  }
  const line = { ...fields, code: outcome.code, errorCode: outcome.error.code, reason: outcome.error.reason, err: outcome.error };
  if (outcome.error.code === "internal" || outcome.error.code === "key_service_error") logger.error(line, "authorization callback failed");
  else logger.warn(line, "authorization callback failed");
}

function setCommonHeaders(res: HttpResponse): void {
  res.setHeader("cache-control", "no-store");
  res.setHeader("referrer-policy", "no-referrer");
  res.setHeader("x-content-type-options", "nosniff");
}

/** Self-contained (no scripts, no third-party resources) and says what to do next. */
function sendErrorPage(res: HttpResponse, status: number, code: "invalid_state" | "server_error"): void {
  res.statusCode = status;
  res.setHeader("content-type", "text/html; charset=utf-8");
  res.setHeader("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'");
  res.setHeader("x-frame-options", "DENY");
  res.end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${ERROR_TITLES[code]}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1d2330}code{background:#eef0f3;padding:0 .25rem}</style>
</head><body><h1>${ERROR_TITLES[code]}</h1>
<p>Go back to the application and connect the account again. Links from the provider work once, for a few minutes, in the browser that started them.</p>
<p><small>error: <code>${code}</code></small></p>
</body></html>`);
}

function decodeSegment(segment: string): string | undefined {
  if (segment === "" || segment.includes("/")) return undefined;
  try {
    const decoded = decodeURIComponent(segment);
    return /^[\x21-\x7e]{1,128}$/.test(decoded) ? decoded : undefined;
  } catch {
    return undefined;
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join("; ") : value;
}

function requestIdOf(req: HttpRequest): string {
  const offered = headerValue(req.headers["x-request-id"]);
  return offered !== undefined && ACCEPTABLE_REQUEST_ID.test(offered) ? offered : randomUUID();
}

function peerOf(req: HttpRequest): string {
  const socket = req.socket;
  return socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort ?? 0}` : "unknown";
}
