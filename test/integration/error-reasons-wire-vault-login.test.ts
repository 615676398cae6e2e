/**
 * The reason of a failed Vault re-login, on both listeners: the status, `ErrorInfo` reason,
 * domain and metadata keys a caller receives.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe } from "vitest";
import { startReasonWorld } from "../support/reason-world.js";
import { startVaultEmulator, type VaultEmulator } from "../support/vault-transit-emulator.js";
import { itRefusesOnTheWire } from "../support/wire-cases.js";
import { KUBERNETES_ROLE, SERVICE_ACCOUNT_JWT, VAULT_LOGIN_CASES, type VaultLoginWorld } from "./error-reasons-wire-vault-login.cases.js";

let world: VaultLoginWorld | undefined;
let vault: VaultEmulator | undefined;
let dir: string | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "oauth-broker-vault-login-"));
  const jwtPath = join(dir, "token");
  await writeFile(jwtPath, SERVICE_ACCOUNT_JWT);
  vault = await startVaultEmulator();
  vault.addKubernetesRole(KUBERNETES_ROLE, SERVICE_ACCOUNT_JWT, 3600, { capabilities: { create: true, update: true, read: true, rotate: true } });
  const reasons = await startReasonWorld({ env: { VAULT_ADDR: vault.url, VAULT_K8S_ROLE: KUBERNETES_ROLE, VAULT_K8S_TOKEN_PATH: jwtPath } });
  world = { ...reasons, vault, jwtPath };
});

afterAll(async () => {
  await world?.close();
  await vault?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe("a failed Vault re-login reaches the caller", () => {
  itRefusesOnTheWire(VAULT_LOGIN_CASES, () => {
    if (world === undefined) throw new Error("the world did not start");
    return world;
  });
});
