/**
 * Connects a sandbox account through a running broker the way a browser does: StartAuthorization
 * (keeping the flow cookie), the sandbox's sign-in page, then the broker's callback.
 */
import { createBrowser, driveConsent } from "./peers/browser.js";

export function connectSandboxAccount(httpUrl: string, userToken: string, username: string, scopes: string[] = []): Promise<string> {
  return connectAccount(httpUrl, userToken, "sandbox", username, scopes);
}

/** The same for any provider played by oidc-provider (the sandbox, the Google/Microsoft peers). */
export async function connectAccount(httpUrl: string, userToken: string, provider: string, username: string, scopes: string[] = []): Promise<string> {
  const browser = createBrowser();
  const started = await fetch(`${httpUrl}/oauthbroker.v1.AuthorizationService/StartAuthorization`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${userToken}` },
    body: JSON.stringify({ provider, scopes }),
  });
  if (started.status !== 200) throw new Error(`StartAuthorization answered ${started.status}: ${await started.text()}`);
  const [cookie = ""] = started.headers.getSetCookie();
  const [pair = ""] = cookie.split(";");
  browser.cookies.set(pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1));
  const { authorizationUrl } = (await started.json()) as { authorizationUrl: string };
  const callback = await driveConsent(authorizationUrl, { username }, browser);
  const arrival = await browser.request(callback);
  const outcome = new URL(arrival.headers.get("location") ?? "", httpUrl);
  const id = outcome.searchParams.get("integration_id");
  if (!id) throw new Error(`the flow did not connect: ${outcome.searchParams.get("error") ?? arrival.status}`);
  return id;
}
