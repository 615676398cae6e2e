/**
 * The broker's page in a real Chromium (playwright-core driving Debian's `chromium`), against
 * the broker as a process on the embedded default with its sandbox provider: a user signs in,
 * connects a sandbox account, sees it listed, reconnects it, deletes it and sees it gone, with
 * no console error and no Content-Security-Policy violation anywhere. When a step fails, a
 * screenshot of every step so far and of the failure stays in the test's output directory
 * (in the temp dir, removed when every step passed), and the failure names it.
 *
 * Without a Chromium on this machine the tests are skipped with a message; in CI (CI=true)
 * they run, so a missing browser fails the run instead of hiding it.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import type { BrokerProcess } from "../support/broker-process.js";
import { freePort } from "../support/free-port.js";

const CHROMIUM = "/usr/bin/chromium";
/** The sandbox's display name (provider-defaults.ts), as the page shows it. */
const SANDBOX = "Sandbox (local test provider)";
const available = existsSync(CHROMIUM);
const inCi = process.env["CI"] === "true";
if (!available && !inCi) {
  console.warn(`web page browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install -y chromium); CI always runs them`);
}

describe.skipIf(!available && !inCi)("the web page in Chromium", () => {
  let broker: BrokerProcess;
  let browser: Browser;
  let page: Page;
  let data: BrokerDataDir | undefined;
  let outputDir: string;
  let userToken: string;
  let steps = 0;
  let failed = false;
  /** Console errors, page errors and CSP violations, on every page the browser showed. */
  const problems: string[] = [];

  beforeAll(async () => {
    data = await createBrokerDataDir("oauth-broker-e2e-page", createLogger({ level: "silent" }));
    outputDir = await mkdtemp(join(tmpdir(), "oauth-broker-page-screenshots-"));
    const port = await freePort();
    const publicUrl = `http://127.0.0.1:${port}`;
    broker = await data.startBroker({ BROKER_HTTP_ADDR: `127.0.0.1:${port}`, BROKER_PUBLIC_URL: publicUrl }, 90_000);
    userToken = await data.token("alice", "user");
    // Chromium's own sandbox needs user namespaces that a root process in a container lacks.
    const args = process.getuid?.() === 0 ? ["--no-sandbox"] : [];
    browser = await chromium.launch({ executablePath: CHROMIUM, args });
    page = await browser.newPage({ viewport: { width: 900, height: 900 } });
    page.setDefaultTimeout(20_000);
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console error on ${page.url()}: ${message.text()}`);
    });
    page.on("pageerror", (error) => problems.push(`page error on ${page.url()}: ${error.message}`));
    await page.exposeBinding("reportCspViolation", (_source, text: string) => void problems.push(`CSP violation: ${text}`));
    // Runs in every page the browser loads, before the page's own script.
    await page.addInitScript(`document.addEventListener("securitypolicyviolation", (event) =>
      window.reportCspViolation(event.violatedDirective + " blocked " + (event.blockedURI || "inline code") + " on " + location.href));`);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    if (broker !== undefined) expect(await broker.stop()).toBe(0);
    await data?.remove();
    if (outputDir !== undefined && !failed) await rm(outputDir, { recursive: true, force: true });
  });

  /** Runs one step, then screenshots it; on failure the screenshot shows the failing state. */
  async function step(name: string, run: () => Promise<void>): Promise<void> {
    steps += 1;
    const file = join(outputDir, `${String(steps).padStart(2, "0")}-${name}.png`);
    try {
      await run();
      expect(problems, `after step "${name}"`).toEqual([]);
      await page.screenshot({ path: file, fullPage: true });
    } catch (error) {
      failed = true;
      await page.screenshot({ path: file, fullPage: true }).catch(() => undefined);
      throw new Error(`step "${name}" failed; screenshots in ${outputDir}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }

  const integrations = () => page.locator("#integrations > li");

  /** The scopes the sandbox's sign-in card lists, once the browser is there. */
  async function scopesAtSandbox(): Promise<string[]> {
    await page.waitForURL(/\/sandbox\/interaction\//);
    return page.locator("main ul li code").allTextContents();
  }

  /** Signs in at the sandbox and allows; resolves back on the broker's page. */
  async function allowAtSandbox(username: string): Promise<void> {
    await page.fill("#username", username);
    await page.click("button[value=allow]");
    await page.waitForURL((url) => url.pathname === "/" && url.search === "");
  }

  it("signs in, connects the sandbox, reconnects, deletes, without console errors or CSP violations", async () => {
    await step("load", async () => {
      const response = await page.goto(`${broker.httpUrl}/`);
      expect(response?.status()).toBe(200);
      expect(response?.headers()["content-security-policy"]).toMatch(/^default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'/);
      await page.getByRole("heading", { name: "Sign in" }).waitFor();
      expect(await page.locator("#connect-card").isHidden()).toBe(true);
    });

    await step("sign-in", async () => {
      await page.click("#sign-in");
      await page.getByText("Paste a user token first.").waitFor();
      await page.fill("#token", userToken);
      await page.click("#sign-in");
      await page.getByText("Signed in as alice").waitFor();
      await page.getByText("No integrations yet").waitFor();
      expect(await page.locator("#provider option").allTextContents()).toContain(SANDBOX);
    });

    let integrationId = "";
    await step("consent", async () => {
      await page.selectOption("#provider", "sandbox");
      // The field's description is the visible hint: what an empty field asks for, and what may be asked.
      await expect.poll(() => page.getByRole("textbox", { name: "Scopes (space-separated)" }).getAttribute("aria-describedby")).toBe("scope-hint");
      expect(await page.locator("#scope-hint").textContent()).toMatch(/^Empty for the defaults: .+\. Allowed: .+\.$/);
      await page.fill("#scopes", "sandbox.read");
      await page.click("#connect");
      // Every scope asked is on the card, the ones the broker adds included.
      expect(await scopesAtSandbox()).toEqual(["sandbox.read", "openid", "offline_access"]);
    });

    await step("connected", async () => {
      await allowAtSandbox("newcomer");
      await page.getByText("Connected. The account is listed below.").waitFor();
      // The token survived the round trip through the provider.
      await page.getByText("Signed in as alice").waitFor();
      await integrations().first().waitFor();
      expect(await integrations().count()).toBe(1);
      const item = integrations().first();
      integrationId = (await item.getAttribute("data-id")) ?? "";
      expect(integrationId).toMatch(/^[0-9a-f-]{36}$/);
      expect(await item.locator("h3").textContent()).toBe(SANDBOX);
      expect(await item.locator(".badge").textContent()).toBe("Active");
      expect(await item.locator("dd").first().textContent()).toBe("newcomer");
      expect((await item.locator(".scopes li").allTextContents()).sort()).toEqual(["offline_access", "openid", "sandbox.read"]);
      expect(await item.locator("dd").nth(3).textContent()).not.toBe("never");
    });

    await step("reconnect", async () => {
      await integrations().first().getByRole("button", { name: "Reconnect" }).click();
      // The same scopes as the first consent, none dropped and none added.
      expect((await scopesAtSandbox()).sort()).toEqual(["offline_access", "openid", "sandbox.read"]);
      await allowAtSandbox("newcomer");
      await page.getByText("Connected. The account is listed below.").waitFor();
      await integrations().first().waitFor();
      expect(await integrations().count()).toBe(1);
      expect(await integrations().first().getAttribute("data-id")).toBe(integrationId);
    });

    await step("delete-confirm", async () => {
      await integrations().first().getByRole("button", { name: "Delete" }).click();
      const dialog = page.locator("dialog#confirm");
      await dialog.waitFor();
      expect(await dialog.textContent()).toContain(`Delete the ${SANDBOX} integration of newcomer?`);
      // Cancelling keeps it.
      await dialog.getByRole("button", { name: "Cancel" }).click();
      await dialog.waitFor({ state: "hidden" });
      expect(await integrations().count()).toBe(1);
      await integrations().first().getByRole("button", { name: "Delete" }).click();
      await dialog.waitFor();
    });

    await step("deleted", async () => {
      await page.locator("dialog#confirm").getByRole("button", { name: "Delete" }).click();
      await page.getByText(`Deleted the ${SANDBOX} integration of newcomer.`).waitFor();
      await page.getByText("No integrations yet").waitFor();
      expect(await integrations().count()).toBe(0);
    });

    await step("errors-in-words", async () => {
      // A token the broker does not accept: the page says so in words.
      await page.click("#sign-out");
      await page.fill("#token", `${userToken.slice(0, -4)}AAAA`);
      await page.click("#sign-in");
      await page.getByText("The broker refused the user token").waitFor();
      // Signed out again, with nothing of the previous session left on the page.
      await page.locator("#token").waitFor();
      expect(await page.locator("#integrations-card").isHidden()).toBe(true);
      // The broker answers 401 to the bad token: that is the failure shown, not a page fault.
      const unexpected = problems.filter((problem) => !/status of 401/.test(problem));
      problems.length = 0;
      problems.push(...unexpected);
    });
  }, 120_000);

  it("shows callback errors and re-authorization causes in words, never an arbitrary or inherited value", async () => {
    const outcome = page.locator("#outcome");
    await step("error-inherited-name", async () => {
      await page.goto(`${broker.httpUrl}/?error=constructor`);
      await outcome.waitFor();
      expect(await outcome.textContent()).toBe("The provider answered constructor, so nothing was connected.");
    });
    await step("error-not-a-code", async () => {
      await page.goto(`${broker.httpUrl}/?error=${encodeURIComponent("Your account is locked, call +1 555 0100")}`);
      await outcome.waitFor();
      expect(await outcome.textContent()).toBe("The provider answered with an error, so nothing was connected.");
    });
    await step("error-invalid-scope", async () => {
      await page.goto(`${broker.httpUrl}/?error=invalid_scope`);
      await outcome.waitFor();
      expect(await outcome.textContent()).toMatch(/^The provider granted more than this page asked for .* the broker revoked that grant and stored nothing/);
    });
    await step("needs-reauth-causes", async () => {
      // The broker's answer is replaced, so the page shows integrations in states hard to reach for real.
      const needingReauth = (id: string, statusReason: string) => ({
        id,
        userId: "alice",
        provider: "sandbox",
        externalAccountId: id,
        externalAccountName: id,
        grantedScopes: ["sandbox.read"],
        status: "INTEGRATION_STATUS_NEEDS_REAUTH",
        statusReason,
        hasRefreshToken: true,
      });
      await page.route("**/oauthbroker.v1.IntegrationService/ListIntegrations", (route) =>
        route.fulfill({
          contentType: "application/json",
          body: JSON.stringify({
            integrations: [
              needingReauth("lost", "rotated_token_lost"),
              needingReauth("widened", "grant_revoked_scope_widened"),
              needingReauth("inherited", "constructor"),
              needingReauth("refused", "invalid_grant"),
            ],
          }),
        }),
      );
      try {
        await page.goto(`${broker.httpUrl}/`);
        await page.fill("#token", userToken);
        await page.click("#sign-in");
        await integrations().nth(3).waitFor();
        const status = (id: string) => page.locator(`#integrations > li[data-id="${id}"] dd`).nth(2).textContent();
        expect(await status("lost")).toBe(
          "Its refresh token was lost with a broker replica that stopped in the middle of a refresh. Reconnect to use it again.",
        );
        expect(await status("widened")).toMatch(/^The provider ended the account's whole grant when the broker revoked a later grant/);
        expect(await status("inherited")).toBe("The provider refused the stored grant (constructor). Reconnect to use it again.");
        expect(await status("refused")).toBe("The provider refused the stored grant (invalid_grant). Reconnect to use it again.");
      } finally {
        await page.unroute("**/oauthbroker.v1.IntegrationService/ListIntegrations");
      }
    });
  }, 120_000);
});
