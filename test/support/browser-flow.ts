/**
 * The authorization flow as a user's browser walks it through a running broker, one step a
 * function so that a test can look at (or tamper with) what passes between them:
 * StartAuthorization (its binding cookie kept in the browser), the provider's sign-in and consent
 * pages, then the broker's callback. `connectAccount` walks all three.
 */
import { createBrowser, driveConsent, type Browser, type ConsentChoices } from "./peers/browser.js";

export interface StartedAuthorization {
  readonly status: number;
  readonly headers: Headers;
  readonly json: Record<string, unknown>;
  /** The provider's page the browser is sent to. */
  readonly authorizationUrl: URL;
  /** The flow's binding cookie as the broker set it, for a user's own flow. */
  readonly setCookie: string | undefined;
}

/** StartAuthorization over Connect JSON; a user's binding cookie lands in `browser`. Throws unless it answers 200. */
export async function startAuthorization(
  httpUrl: string,
  headers: Record<string, string>,
  body: Record<string, unknown>,
  browser?: Browser,
): Promise<StartedAuthorization> {
  const response = await fetch(`${httpUrl}/oauthbroker.v1.AuthorizationService/StartAuthorization`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`StartAuthorization answered ${response.status}: ${text}`);
  const json = JSON.parse(text) as Record<string, unknown>;
  const setCookie = response.headers.getSetCookie()[0];
  if (browser !== undefined && setCookie !== undefined) {
    const [pair = ""] = setCookie.split(";");
    browser.cookies.set(pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1));
  }
  return { status: response.status, headers: response.headers, json, authorizationUrl: new URL(String(json["authorizationUrl"])), setCookie };
}

/**
 * The browser at the provider: sign-in and consent pages, up to the redirect back to the broker
 * (not followed). The Notion peer has no sign-in page: it takes the user and decision in the URL.
 */
export function consentAtProvider(url: URL | string, choices: ConsentChoices, browser: Browser, provider?: string): Promise<URL> {
  const target = new URL(url);
  if (provider === "notion") {
    target.searchParams.set("user", choices.username);
    if (choices.deny === true) target.searchParams.set("decision", "deny");
  }
  return driveConsent(target, choices, browser);
}

export interface CallbackArrival {
  readonly response: Response;
  /** Where the broker sends the browser next, if anywhere. */
  readonly location: URL | undefined;
}

/** The browser arriving at the broker's callback. The response body is left to the caller. */
export async function arriveAtCallback(browser: Browser, callbackUrl: URL | string, method = "GET"): Promise<CallbackArrival> {
  const response = await browser.request(new URL(callbackUrl), { method });
  const location = response.headers.get("location");
  return { response, location: location === null ? undefined : new URL(location, callbackUrl) };
}

/** A user connects an account from their browser; returns the integration id the broker sends them back with. */
export async function connectAccount(httpUrl: string, userToken: string, provider: string, username: string, scopes: string[] = []): Promise<string> {
  const browser = createBrowser();
  const started = await startAuthorization(httpUrl, { authorization: `Bearer ${userToken}` }, { provider, scopes }, browser);
  const callback = await consentAtProvider(started.authorizationUrl, { username }, browser, provider);
  const { response, location } = await arriveAtCallback(browser, callback);
  await response.body?.cancel();
  const id = location?.searchParams.get("integration_id");
  if (!id) throw new Error(`the flow did not connect: ${location?.searchParams.get("error") ?? response.status}`);
  return id;
}

export function connectSandboxAccount(httpUrl: string, userToken: string, username: string, scopes: string[] = []): Promise<string> {
  return connectAccount(httpUrl, userToken, "sandbox", username, scopes);
}
