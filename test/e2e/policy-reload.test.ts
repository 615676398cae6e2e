/**
 * Policy reload on SIGHUP against the broker process: the new policy applies to the next call,
 * calls in flight are not dropped, and an invalid file leaves the previous policy in force.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import type { BrokerProcess } from "../support/broker-process.js";
import { freePort } from "../support/free-port.js";
import { waitUntil } from "../support/wait-until.js";

let data: BrokerDataDir;
let broker: BrokerProcess;
let billing: string;

const policy = (rpcs: string) =>
  `policies:\n  - service: billing\n    providers: [sandbox]\n    scopes: ["*"]\n    actForUsers: true\n    rpcs: [${rpcs}]\n`;

beforeAll(async () => {
  data = await createBrokerDataDir("oauth-broker-reload", createLogger({ level: "silent" }));
  await data.writeConfig([policy("")]);
  const port = await freePort();
  broker = await data.startBroker({ BROKER_HTTP_ADDR: `127.0.0.1:${port}`, BROKER_PUBLIC_URL: `http://127.0.0.1:${port}` }, 30_000);
  billing = await data.token("billing", "service");
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  await data?.remove();
});

const start = () =>
  fetch(`${broker.httpUrl}/oauthbroker.v1.AuthorizationService/StartAuthorization`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${billing}` },
    body: JSON.stringify({ provider: "sandbox", userId: "bob" }),
  });

const list = () =>
  fetch(`${broker.httpUrl}/oauthbroker.v1.ProviderService/ListProviders`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${billing}` },
    body: "{}",
  }).then((r) => r.status);

it("applies a new policy on SIGHUP without dropping calls, and keeps it when the file is broken", async () => {
  expect((await start()).status).toBe(403);

  await data.writeConfig([policy("AuthorizationService/StartAuthorization")]);
  const during = Array.from({ length: 50 }, () => list());
  broker.child.kill("SIGHUP");
  expect(new Set(await Promise.all(during))).toEqual(new Set([200]));
  // The broker logs the reload once the new policy is in force: the very next call is allowed.
  await waitUntil(() => broker.output().includes("policies and limits reloaded"), "the broker reloads its policies", 20_000);
  expect((await start()).status).toBe(200);

  await data.writeConfig(["policies: [this is not valid"]);
  broker.child.kill("SIGHUP");
  // The refusal is logged once the broken file was read and rejected: only then is "still
  // allowed" a check of the kept policy rather than of a reload not yet begun.
  await waitUntil(() => broker.output().includes("configuration reload refused"), "the broker refuses the broken file", 20_000);
  expect((await start()).status).toBe(200);
  expect(broker.child.exitCode).toBeNull();
}, 60_000);
