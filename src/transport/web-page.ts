/**
 * The broker's own page at `/`: lets a person try the browser flow — paste a user token, pick a
 * provider, connect — and shows the outcome when the provider's redirect comes back. It calls
 * StartAuthorization from the broker's origin with fetch, so the flow-binding cookie lands in
 * this browser (see authorization-service.ts). No third-party resources, no inline handlers:
 * the Content-Security-Policy allows only this page's own script.
 */
import { createHash } from "node:crypto";
import type { HttpRoute } from "./http-listener.js";

const SCRIPT = `
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.get("status") === "connected") {
  $("outcome").textContent = "Connected: integration " + params.get("integration_id");
} else if (params.get("error")) {
  $("outcome").textContent = "The connection failed: " + params.get("error");
}
history.replaceState(null, "", location.pathname);
const rpc = async (method, body) => {
  const response = await fetch("/oauthbroker.v1." + method, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer " + $("token").value.trim() },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const json = await response.json();
  if (!response.ok) throw new Error(json.message || response.statusText);
  return json;
};
$("load").addEventListener("click", async () => {
  try {
    const { providers = [] } = await rpc("ProviderService/ListProviders", {});
    $("provider").replaceChildren(...providers.filter((p) => p.credentialsConfigured).map((p) => new Option(p.displayName, p.id)));
    $("connect").disabled = providers.length === 0;
    $("outcome").textContent = "";
  } catch (error) {
    $("outcome").textContent = String(error.message);
  }
});
$("connect").addEventListener("click", async () => {
  try {
    const scopes = $("scopes").value.split(/\\s+/).filter(Boolean);
    const { authorizationUrl } = await rpc("AuthorizationService/StartAuthorization", { provider: $("provider").value, scopes });
    location.assign(authorizationUrl);
  } catch (error) {
    $("outcome").textContent = String(error.message);
  }
});
`;

const SCRIPT_HASH = createHash("sha256").update(SCRIPT).digest("base64");

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>oauth-broker</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
label { display: block; margin-top: 1rem; font-weight: 600; }
input, select, textarea { width: 100%; font: inherit; padding: .4rem; box-sizing: border-box; }
button { margin-top: 1rem; font: inherit; padding: .4rem 1rem; }
#outcome { margin-top: 1.5rem; font-weight: 600; }
code { background: #f3f3f3; padding: 0 .2rem; }
</style>
</head>
<body>
<h1>oauth-broker</h1>
<p>Connect a third-party account to a broker user. Get a user token with
<code>npm run token -- --user alice</code> and paste it here.</p>
<label for="token">User token</label>
<textarea id="token" rows="3" autocomplete="off" spellcheck="false"></textarea>
<button id="load" type="button">Load providers</button>
<label for="provider">Provider</label>
<select id="provider"></select>
<label for="scopes">Scopes (space-separated; empty for the provider's defaults)</label>
<input id="scopes" autocomplete="off">
<button id="connect" type="button" disabled>Connect</button>
<p id="outcome" role="status"></p>
<script>${SCRIPT}</script>
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
    res.setHeader(
      "content-security-policy",
      `default-src 'none'; script-src 'sha256-${SCRIPT_HASH}'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'`,
    );
    if (req.method === "HEAD") res.end();
    else res.end(PAGE);
    return true;
  };
}
