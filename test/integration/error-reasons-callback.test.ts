/**
 * The browser callback's refusals, on a running broker's HTTP listener: the provider sends the
 * browser back with a defect, and the broker answers it as a browser is answered — a redirect
 * to the app with `error=<code>`, or, without a session to trust a `return_to` from, an error
 * page — never an ErrorInfo. The reason is what the audit trail records for the refusal.
 * - `CODE_MISSING`: a redirect with the session's state and neither a code nor an error;
 * - a redirect without a state, or with the state of another browser's flow, finds no session:
 *   `INVALID_STATE`, before the provider client's own state check (`STATE_MISSING`,
 *   `STATE_MISMATCH`, tested in test/unit/provider-authorization-response.test.ts) could fail.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ErrorReason } from "../../src/domain/error-reasons.js";
import { arriveAtCallback, startAuthorization } from "../support/browser-flow.js";
import { createBrowser, type Browser } from "../support/peers/browser.js";
import { startReasonWorld, type ReasonWorld } from "../support/reason-world.js";

const PROVIDER = "lookalike";
const FLOW_COOKIE = `oauth_broker_flow_${PROVIDER}`;

let world: ReasonWorld;

beforeAll(async () => {
  world = await startReasonWorld();
});

afterAll(async () => {
  await world?.close();
});

/** The user's own flow, started from their browser (which keeps the binding cookie). */
async function startFlow(user: string): Promise<{ browser: Browser; redirectUri: URL; state: string }> {
  const browser = createBrowser();
  const bearer = await world.broker.bearer(user, "user");
  const started = await startAuthorization(world.broker.httpUrl, { authorization: bearer }, { provider: PROVIDER }, browser);
  const redirectUri = new URL(started.authorizationUrl.searchParams.get("redirect_uri") ?? "");
  return { browser, redirectUri, state: started.authorizationUrl.searchParams.get("state") ?? "" };
}

/** The provider's redirect back to the broker, with exactly these parameters. */
function redirectBack(redirectUri: URL, params: Record<string, string>): URL {
  const url = new URL(redirectUri);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return url;
}

async function failureReasons(user: string | undefined): Promise<string[]> {
  const rows = await world.db.sql<{ reason: string }[]>`
    select reason from audit_events
    where action = 'authorization.failed' and provider = ${PROVIDER} and user_id = ${user ?? ""}
    order by sequence`;
  return rows.map((row) => row.reason);
}

function expectReasons(actual: string[], reasons: ErrorReason[]): void {
  expect(actual).toEqual(reasons);
}

describe("the browser callback answers a defective redirect without an ErrorInfo", () => {
  it("CODE_MISSING: the session's state and no code sends the browser back to the app with error=server_error", async () => {
    const user = "callback-code-missing";
    const { browser, redirectUri, state } = await startFlow(user);
    const tokenRequests = world.peer.requests("token");

    const { response, location } = await arriveAtCallback(browser, redirectBack(redirectUri, { state }));
    await response.body?.cancel();

    expect(response.status).toBe(303);
    expect(response.headers.get("content-type")).toBeNull();
    expect(location?.searchParams.get("error")).toBe("server_error");
    expect(location?.searchParams.has("integration_id")).toBe(false);
    // The session is used up, and its cookie with it: the flow must start again.
    expect(browser.cookies.has(FLOW_COOKIE)).toBe(false);
    expect(world.peer.requests("token")).toBe(tokenRequests);
    expectReasons(await failureReasons(user), ["CODE_MISSING"]);
    const line = world.broker.log.lines.find((l) => l["msg"] === "authorization callback failed" && l["reason"] === "CODE_MISSING");
    expect(line).toMatchObject({ code: "server_error", errorCode: "provider_error", provider: PROVIDER });
  });

  it("no state, or another browser's state: INVALID_STATE on an error page, and the flow in progress stays usable", async () => {
    const user = "callback-state-defects";
    const victim = await startFlow(user);
    const other = createBrowser();

    const missing = await arriveAtCallback(victim.browser, redirectBack(victim.redirectUri, { code: `code-for-${user}` }));
    const foreign = await arriveAtCallback(other, redirectBack(victim.redirectUri, { state: victim.state, code: `code-for-${user}` }));
    for (const { response, location } of [missing, foreign]) {
      expect(response.status).toBe(400);
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(await response.text()).toContain("This sign-in link is no longer valid");
      expect(location).toBeUndefined();
    }
    // Neither found a session, so neither knows the user.
    expectReasons(await failureReasons(undefined), ["INVALID_STATE", "INVALID_STATE"]);
    expect(await failureReasons(user)).toEqual([]);

    // The state is the session's only key and the cookie its binding: the victim's own redirect still connects.
    const own = await arriveAtCallback(victim.browser, redirectBack(victim.redirectUri, { state: victim.state, code: `code-for-${user}` }));
    await own.response.body?.cancel();
    expect(own.response.status).toBe(303);
    expect(own.location?.searchParams.get("status")).toBe("connected");
  });
});
