/**
 * The broker's own page at `/`: a person signs in with a user token and manages their
 * integrations — connects an account, sees each one's provider, account, granted scopes, status
 * and last refresh, reconnects one and deletes one (after a confirmation). It calls the Connect
 * API from the broker's origin with fetch, so the flow-binding cookie of StartAuthorization
 * lands in this browser (see authorization-service.ts). No third-party resources, no inline
 * handlers: the Content-Security-Policy allows only this page's own script and stylesheet, by
 * hash, and requests to its own origin.
 */
import { createHash } from "node:crypto";
import type { HttpRoute } from "./http-listener.js";
import { PAGE_SCRIPT } from "./web-page-script.js";
import { PAGE_STYLE } from "./web-page-style.js";

const sha256 = (text: string): string => createHash("sha256").update(text).digest("base64");

const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `script-src 'sha256-${sha256(PAGE_SCRIPT)}'`,
  `style-src 'sha256-${sha256(PAGE_STYLE)}'`,
  "connect-src 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>oauth-broker: integrations</title>
<style>${PAGE_STYLE}</style>
</head>
<body>
<header>
<h1>oauth-broker</h1>
<p class="lead">Connect your accounts at third-party providers, and manage the connections.</p>
</header>
<main>
<section class="card" aria-labelledby="sign-in-title">
<h2 id="sign-in-title">Sign in</h2>
<div id="signed-out">
<p>Paste a broker user token. Make one with <code>npm run token -- --user alice</code>. It stays in this
browser tab only, while you connect accounts.</p>
<label for="token">User token</label>
<textarea id="token" rows="3" autocomplete="off" spellcheck="false"></textarea>
<div class="actions"><button id="sign-in" type="button" class="primary">Sign in</button></div>
</div>
<div id="signed-in" hidden>
<p>Signed in as <strong id="subject"></strong></p>
<button id="sign-out" type="button">Sign out</button>
</div>
</section>
<p id="outcome" role="status" hidden></p>
<section id="connect-card" class="card" aria-labelledby="connect-title" hidden>
<h2 id="connect-title">Connect an account</h2>
<div class="row">
<div><label for="provider">Provider</label><select id="provider"></select></div>
<div><label for="scopes">Scopes (space-separated)</label><input id="scopes" autocomplete="off" spellcheck="false" aria-describedby="scope-hint"></div>
</div>
<p id="scope-hint" class="hint"></p>
<div class="actions"><button id="connect" type="button" class="primary" disabled>Connect</button></div>
</section>
<section id="integrations-card" class="card" aria-labelledby="integrations-title" hidden>
<div class="card-head"><h2 id="integrations-title">Your integrations</h2><button id="reload" type="button">Reload</button></div>
<p id="empty" hidden>No integrations yet: connect an account above.</p>
<ul id="integrations" class="integrations"></ul>
</section>
</main>
<dialog id="confirm" aria-labelledby="confirm-title">
<h2 id="confirm-title">Delete this integration?</h2>
<p id="confirm-text"></p>
<div class="actions"><button id="confirm-cancel" type="button">Cancel</button><button id="confirm-delete" type="button" class="danger solid">Delete</button></div>
</dialog>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;

export function webPageRoute(): HttpRoute {
  return (req, res, url) => {
    if (url.pathname !== "/" || (req.method !== "GET" && req.method !== "HEAD")) return false;
    res.statusCode = 200;
    res.setHeader("content-type", "text/html; charset=utf-8");
    res.setHeader("cache-control", "no-store");
    res.setHeader("referrer-policy", "no-referrer");
    res.setHeader("x-content-type-options", "nosniff");
    res.setHeader("x-frame-options", "DENY");
    res.setHeader("content-security-policy", CONTENT_SECURITY_POLICY);
    if (req.method === "HEAD") res.end();
    else res.end(PAGE);
    return true;
  };
}
