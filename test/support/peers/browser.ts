/**
 * A headless "browser" for authorization flows: plain fetch with `redirect: "manual"`, a cookie
 * jar, and form submission. It follows the provider's redirects and consent pages and stops at
 * the redirect to the client's `redirect_uri`, which it returns without following.
 */

export interface ConsentChoices {
  readonly username: string;
  /** Scopes the user grants (the page's `grant_scope` field); all requested when absent. */
  readonly grantScopes?: readonly string[] | undefined;
  /** Press "Deny" instead of signing in. */
  readonly deny?: boolean | undefined;
}

export interface Browser {
  readonly cookies: Map<string, string>;
  request(url: URL, init?: { method?: string; form?: URLSearchParams }): Promise<Response>;
}

export function createBrowser(): Browser {
  const cookies = new Map<string, string>();
  return {
    cookies,
    async request(url, init = {}) {
      const headers: Record<string, string> = {};
      if (cookies.size > 0) headers["cookie"] = [...cookies].map(([k, v]) => `${k}=${v}`).join("; ");
      if (init.form !== undefined) headers["content-type"] = "application/x-www-form-urlencoded";
      const response = await fetch(url, {
        method: init.method ?? (init.form === undefined ? "GET" : "POST"),
        headers,
        body: init.form?.toString(),
        redirect: "manual",
      });
      for (const line of response.headers.getSetCookie()) {
        const [pair = "", ...attributes] = line.split(";");
        const index = pair.indexOf("=");
        const name = pair.slice(0, index).trim();
        const value = pair.slice(index + 1).trim();
        const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === "";
        if (expired) cookies.delete(name);
        else cookies.set(name, value);
      }
      return response;
    },
  };
}

/** The first `<form>` of a page: its absolute action and hidden fields. */
export function parseForm(html: string, pageUrl: URL): { action: URL; hidden: Record<string, string> } | undefined {
  const form = /<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (form === null) return undefined;
  const hidden: Record<string, string> = {};
  for (const input of (form[2] ?? "").matchAll(/<input[^>]*type="hidden"[^>]*>/gi)) {
    const name = /name="([^"]*)"/.exec(input[0])?.[1];
    const value = /value="([^"]*)"/.exec(input[0])?.[1] ?? "";
    if (name !== undefined) hidden[name] = unescapeHtml(value);
  }
  return { action: new URL(unescapeHtml(form[1] ?? ""), pageUrl), hidden };
}

/**
 * Drives the browser side of an authorization request through login and consent pages and
 * returns the redirect to the client's redirect URI (not followed).
 */
export async function driveConsent(authorizationUrl: string | URL, choices: ConsentChoices, browser = createBrowser()): Promise<URL> {
  let url = new URL(authorizationUrl);
  const redirectUri = url.searchParams.get("redirect_uri");
  let form: URLSearchParams | undefined;
  for (let step = 0; step < 20; step += 1) {
    const response = await browser.request(url, form === undefined ? {} : { form });
    form = undefined;
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location !== null) {
      await response.body?.cancel();
      const next = new URL(location, url);
      if (redirectUri !== null && next.href.startsWith(redirectUri)) return next;
      url = next;
      continue;
    }
    const text = await response.text();
    const page = response.status === 200 ? parseForm(text, url) : undefined;
    if (page === undefined) {
      throw new Error(`driveConsent: unexpected HTTP ${response.status} at ${url.pathname}: ${text.slice(0, 300)}`);
    }
    form = new URLSearchParams({ ...page.hidden, username: choices.username, decision: choices.deny === true ? "deny" : "allow" });
    if (choices.grantScopes !== undefined) form.set("grant_scope", choices.grantScopes.join(" "));
    url = page.action;
  }
  throw new Error("driveConsent: too many steps");
}

function unescapeHtml(value: string): string {
  return value.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code))).replace(/&amp;/g, "&");
}
