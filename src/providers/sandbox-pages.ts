/**
 * The sandbox provider's pages: one sign-in form that accepts any user name and grants the
 * requested scopes in one click, and an error page. Self-contained HTML (no scripts, no
 * third-party resources), served with a restrictive Content-Security-Policy.
 */
import type { ServerResponse } from "node:http";

export interface LoginPage {
  readonly action: string;
  readonly clientName: string;
  readonly scopes: readonly string[];
  readonly username?: string | undefined;
  readonly error?: string | undefined;
}

const STYLE = `body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.3rem;margin-top:0}label{display:block;font-weight:600;margin:1rem 0 .3rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
.actions{display:flex;gap:.5rem;margin-top:1rem}button{padding:.5rem 1rem;font-size:1rem;cursor:pointer}
.error{color:#a4161a}code{background:#eef0f3;padding:0 .25rem;border-radius:3px}small{color:#5b6270}`;

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function renderLoginPage(page: LoginPage): string {
  const scopes = page.scopes.map((s) => `<li><code>${escapeHtml(s)}</code></li>`).join("");
  const error = page.error === undefined ? "" : `<p class="error" role="alert">${escapeHtml(page.error)}</p>`;
  return document(
    "Sandbox sign-in",
    `<h1>Sandbox provider</h1>
<p><small>The broker's built-in identity provider for trying it out: any user name signs in, no password.</small></p>
<p><strong>${escapeHtml(page.clientName)}</strong> asks for:</p><ul>${scopes}</ul>
${error}<form method="post" action="${escapeHtml(page.action)}">
<label for="username">User name</label>
<input id="username" name="username" required maxlength="64" autocomplete="username" autofocus value="${escapeHtml(page.username ?? "")}">
<div class="actions"><button type="submit" name="decision" value="allow">Sign in and allow</button>
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button></div>
</form>`,
  );
}

export function renderErrorPage(title: string, details: Readonly<Record<string, string>>): string {
  const rows = Object.entries(details)
    .map(([key, value]) => `<p><strong>${escapeHtml(key)}</strong>: ${escapeHtml(value)}</p>`)
    .join("");
  return document(title, `<h1>${escapeHtml(title)}</h1>${rows}`);
}

/** Headers for every sandbox page: nothing cached, framed, referred or loaded from elsewhere. */
export function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.statusCode = status;
  res.setHeader("content-type", "text/html; charset=utf-8");
  res.setHeader("cache-control", "no-store");
  res.setHeader("referrer-policy", "no-referrer");
  res.setHeader("x-frame-options", "DENY");
  res.setHeader("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'");
  res.end(html);
}

function document(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body><main>${body}</main></body></html>`;
}
