/**
 * Policy reload on SIGHUP against the broker process: the new policy applies to the next call,
 * calls in flight are not dropped, and an invalid file leaves the previous policy in force.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { waitUntil } from "../support/wait-until.js";
import { loadOrCreateLocalSigningKey, signLocalToken } from "../../src/auth/local-signing-key.js";
import { startBrokerProcess, type BrokerProcess } from "../support/broker-process.js";
import { freePort } from "../support/free-port.js";
import { rootServerHome } from "../../src/storage/embedded-postgres-layout.js";

let dataDir: string;
let configPath: string;
let broker: BrokerProcess;
let billing: string;

const policy = (rpcs: string) =>
  `policies:\n  - service: billing\n    providers: [sandbox]\n    scopes: ["*"]\n    actForUsers: true\n    rpcs: [${rpcs}]\n`;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "oauth-broker-reload-"));
  configPath = join(dataDir, "broker.yaml");
  await writeFile(configPath, policy(""));
  const port = await freePort();
  broker = await startBrokerProcess({
    BROKER_DATA_DIR: dataDir,
    BROKER_CONFIG: configPath,
    BROKER_HTTP_ADDR: `127.0.0.1:${port}`,
    BROKER_PUBLIC_URL: `http://127.0.0.1:${port}`,
  });
  billing = await signLocalToken(await loadOrCreateLocalSigningKey(dataDir), { subject: "billing", kind: "service" });
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  // As root the embedded server's home is outside the data directory.
  await rm(rootServerHome(join(dataDir, "postgres")), { recursive: true, force: true });
  await rm(dataDir, { recursive: true, force: true });
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

  await writeFile(configPath, policy("AuthorizationService/StartAuthorization"));
  const during = Array.from({ length: 50 }, () => list());
  broker.child.kill("SIGHUP");
  expect(new Set(await Promise.all(during))).toEqual(new Set([200]));
  // The broker logs the reload once the new policy is in force: the very next call is allowed.
  await waitUntil(() => broker.output().includes("policies and limits reloaded"), "the broker reloads its policies", 20_000);
  expect((await start()).status).toBe(200);

  await writeFile(configPath, "policies: [this is not valid");
  broker.child.kill("SIGHUP");
  // The refusal is logged once the broken file was read and rejected: only then is "still
  // allowed" a check of the kept policy rather than of a reload not yet begun.
  await waitUntil(() => broker.output().includes("configuration reload refused"), "the broker refuses the broken file", 20_000);
  expect((await start()).status).toBe(200);
  expect(broker.child.exitCode).toBeNull();
}, 60_000);
