/**
 * The script of the broker's page (web-page.ts), as plain browser JavaScript: no build step, no
 * third-party code. It talks Connect JSON to the broker's own origin with the pasted user token,
 * which it keeps in this tab's sessionStorage so the round trip through a provider's consent
 * page does not lose it. Everything shown is set with `textContent`: nothing the broker or a
 * provider returns is parsed as HTML.
 */
export const PAGE_SCRIPT = String.raw`
"use strict";
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "oauth-broker.user-token";
let providers = [];
let pendingDelete = undefined;

const CALLBACK_ERRORS = {
  access_denied: "You denied access at the provider, so nothing was connected.",
  expired_state: "The sign-in at the provider took too long. Connect again.",
  invalid_state: "The sign-in could not be matched to this browser. Connect again from this page.",
  invalid_grant: "The provider refused to hand over the grant. Connect again.",
  invalid_issuer: "The answer did not come from the provider the broker expected, so it was refused.",
  invalid_scope:
    "The provider granted more than this page asked for (the consent page's scopes were changed), so the broker revoked that grant and stored nothing. Connect again without changing the scopes.",
  temporarily_unavailable: "The provider is unavailable right now. Try again in a minute.",
  server_error: "The broker could not complete the connection. Its log says why.",
};

/** Why an integration needs re-authorization, by its status reason. */
const NEEDS_REAUTH_CAUSES = {
  no_refresh_token: "The provider granted no refresh token.",
  rotated_token_lost: "Its refresh token was lost with a broker replica that stopped in the middle of a refresh.",
  grant_revoked_scope_widened: "The provider ended the account's whole grant when the broker revoked a later grant with scopes nobody asked for.",
};

/** A provider's or the broker's error code, in words; an unknown code is named only when it looks like one. */
function callbackError(code) {
  if (Object.hasOwn(CALLBACK_ERRORS, code)) return CALLBACK_ERRORS[code];
  return /^[a-z_]{1,40}$/.test(code)
    ? "The provider answered " + code + ", so nothing was connected."
    : "The provider answered with an error, so nothing was connected.";
}

function say(text, kind) {
  const outcome = $("outcome");
  outcome.textContent = text;
  outcome.dataset.kind = kind || "info";
  outcome.hidden = text === "";
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** The token's subject, for display only: the broker verifies the token on every call. */
function subjectOf(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub || "(no subject)";
  } catch {
    return "(unreadable token)";
  }
}

async function rpc(method, body) {
  let response;
  try {
    response = await fetch("/oauthbroker.v1." + method, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer " + token() },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new Error("The broker could not be reached. Check that it is running.");
  }
  let json = {};
  try {
    json = await response.json();
  } catch {
    // Not a Connect answer: described by its status below.
  }
  if (response.ok) return json;
  if (json.code === "unauthenticated") {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedIn(false);
    throw new Error("The broker refused the user token (expired, or not signed by this broker). Paste a new one.");
  }
  throw new Error(json.message ? "The broker answered: " + json.message : "The broker answered HTTP " + response.status + ".");
}

function providerName(id) {
  const provider = providers.find((p) => p.id === id);
  return provider ? provider.displayName || id : id;
}

function when(time) {
  return time ? new Date(time).toLocaleString() : "never";
}

/** The status in words: what happened, and what the user can do. */
function describe(integration) {
  const reason = integration.statusReason || "";
  if (integration.status === "INTEGRATION_STATUS_NEEDS_REAUTH") {
    const what = Object.hasOwn(NEEDS_REAUTH_CAUSES, reason)
      ? NEEDS_REAUTH_CAUSES[reason]
      : "The provider refused the stored grant" + (/^[a-z_]{1,40}$/.test(reason) ? " (" + reason + ")." : ".");
    return { badge: "Needs re-authorization", kind: "bad", text: what + " Reconnect to use it again." };
  }
  if (!integration.hasRefreshToken) {
    const expires = integration.accessTokenExpireTime;
    const ended = expires && new Date(expires).getTime() <= Date.now();
    return {
      badge: ended ? "Expired" : "No refresh token",
      kind: ended ? "bad" : "warn",
      text: "The provider granted no refresh token: access " + (ended ? "ended" : "ends") + " at " + when(expires) + ". Reconnect to keep it.",
    };
  }
  if (integration.refreshFailureCount > 0) {
    return { badge: "Active", kind: "warn", text: "The last refresh failed" + (reason ? " (" + reason + ")" : "") + "; the broker tries again." };
  }
  return { badge: "Active", kind: "ok", text: "The broker refreshes its token before it expires." };
}

function field(label, value) {
  const wrapper = document.createElement("div");
  const term = document.createElement("dt");
  term.textContent = label;
  const detail = document.createElement("dd");
  if (value instanceof Node) detail.append(value);
  else detail.textContent = value;
  wrapper.append(term, detail);
  return wrapper;
}

function button(label, className, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = label;
  element.addEventListener("click", onClick);
  return element;
}

function renderIntegration(integration) {
  const status = describe(integration);
  const item = document.createElement("li");
  item.className = "integration";
  item.dataset.id = integration.id;
  const head = document.createElement("div");
  head.className = "integration-head";
  const title = document.createElement("h3");
  title.textContent = providerName(integration.provider);
  const badge = document.createElement("span");
  badge.className = "badge " + status.kind;
  badge.textContent = status.badge;
  head.append(title, badge);
  const scopes = document.createElement("ul");
  scopes.className = "scopes";
  for (const scope of integration.grantedScopes || []) {
    const chip = document.createElement("li");
    chip.textContent = scope;
    scopes.append(chip);
  }
  const details = document.createElement("dl");
  details.append(
    field("Account", integration.externalAccountName || integration.externalAccountId || "unknown"),
    field("Granted scopes", scopes),
    field("Status", status.text),
    field("Last refreshed", when(integration.lastRefreshTime)),
  );
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.append(
    button("Reconnect", status.kind === "ok" ? "" : "primary", () => reconnect(integration)),
    button("Delete", "danger", () => confirmDelete(integration)),
  );
  item.append(head, details, actions);
  return item;
}

async function loadIntegrations() {
  const integrations = [];
  let pageToken = "";
  for (let page = 0; page < 20; page++) {
    const answer = await rpc("IntegrationService/ListIntegrations", { pageToken });
    integrations.push(...(answer.integrations || []));
    pageToken = answer.nextPageToken || "";
    if (!pageToken) break;
  }
  $("integrations").replaceChildren(...integrations.map(renderIntegration));
  $("empty").hidden = integrations.length > 0;
}

async function loadProviders() {
  const answer = await rpc("ProviderService/ListProviders", {});
  providers = answer.providers || [];
  const usable = providers.filter((p) => p.credentialsConfigured);
  $("provider").replaceChildren(...usable.map((p) => new Option(p.displayName || p.id, p.id)));
  $("connect").disabled = usable.length === 0;
  showScopeHint();
}

function showScopeHint() {
  const provider = providers.find((p) => p.id === $("provider").value);
  $("scope-hint").textContent = provider
    ? "Empty for the defaults: " + ((provider.defaultScopes || []).join(" ") || "none") + ". Allowed: " + ((provider.allowedScopes || []).join(" ") || "any") + "."
    : "";
}

function showSignedIn(signedIn) {
  if (!signedIn) $("integrations").replaceChildren();
  $("signed-out").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
  $("connect-card").hidden = !signedIn;
  $("integrations-card").hidden = !signedIn;
  $("subject").textContent = signedIn ? subjectOf(token()) : "";
}

async function load() {
  await loadProviders();
  await loadIntegrations();
}

async function startAuthorization(provider, scopes) {
  const { authorizationUrl } = await rpc("AuthorizationService/StartAuthorization", { provider, scopes });
  location.assign(authorizationUrl);
}

/**
 * The same grant again. The granted scopes are in the provider's spelling; the broker reads them
 * in its configuration's spelling and adds the protocol's own scopes itself, so they are sent
 * as they are rather than matched here against the configured names.
 */
async function reconnect(integration) {
  try {
    say("Reconnecting " + providerName(integration.provider) + "…", "info");
    await startAuthorization(integration.provider, integration.grantedScopes || []);
  } catch (error) {
    say(error.message, "error");
  }
}

function confirmDelete(integration) {
  pendingDelete = integration;
  $("confirm-text").textContent =
    "Delete the " + providerName(integration.provider) + " integration of " + (integration.externalAccountName || integration.externalAccountId) +
    "? The broker revokes its tokens at the provider where it can, and services lose access to the account.";
  $("confirm").showModal();
}

async function deleteConfirmed() {
  const integration = pendingDelete;
  pendingDelete = undefined;
  $("confirm").close();
  if (!integration) return;
  try {
    await rpc("IntegrationService/DeleteIntegration", { id: integration.id });
    say("Deleted the " + providerName(integration.provider) + " integration of " + (integration.externalAccountName || integration.externalAccountId) + ".", "ok");
    await loadIntegrations();
  } catch (error) {
    say(error.message, "error");
  }
}

function showCallbackOutcome() {
  const params = new URLSearchParams(location.search);
  if (params.get("status") === "connected") say("Connected. The account is listed below.", "ok");
  else if (params.get("error")) say(callbackError(params.get("error")), "error");
  history.replaceState(null, "", location.pathname);
}

$("sign-in").addEventListener("click", async () => {
  const pasted = $("token").value.trim();
  if (pasted === "") {
    say("Paste a user token first.", "error");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, pasted);
  $("token").value = "";
  showSignedIn(true);
  say("", "info");
  try {
    await load();
  } catch (error) {
    say(error.message, "error");
  }
});
$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignedIn(false);
  say("Signed out.", "info");
});
$("provider").addEventListener("change", showScopeHint);
$("connect").addEventListener("click", async () => {
  try {
    await startAuthorization($("provider").value, $("scopes").value.split(/\s+/).filter(Boolean));
  } catch (error) {
    say(error.message, "error");
  }
});
$("reload").addEventListener("click", () => loadIntegrations().catch((error) => say(error.message, "error")));
$("confirm-cancel").addEventListener("click", () => {
  pendingDelete = undefined;
  $("confirm").close();
});
$("confirm-delete").addEventListener("click", deleteConfirmed);

showCallbackOutcome();
showSignedIn(token() !== "");
if (token() !== "") load().catch((error) => say(error.message, "error"));
`;
