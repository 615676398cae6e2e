/**
 * Vault transit settings: present exactly when `VAULT_ADDR` is set. Exactly one way to log in
 * must be configured — a token, AppRole, or Kubernetes — so the broker never guesses which
 * identity it runs as.
 */
import type { Problems } from "./config-error.js";
import { parseHttpUrl } from "./http-url.js";
import { createSecret } from "./secret.js";
import type { Secret, VaultConfig } from "./types.js";
import type { Env, YamlReader } from "./yaml-reader.js";

export const VAULT_YAML_KEYS = ["createKey", "timeoutMs"];
export const DEFAULT_KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/** Vault path segments: the mount may be nested (`team/transit`), the key may not. */
const MOUNT = /^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/;
const KEY_NAME = /^[A-Za-z0-9_.-]+$/;

export function readVault(problems: Problems, env: Env, yaml: YamlReader): VaultConfig | undefined {
  // Read the YAML section even without Vault, so its typos are still reported.
  const createKey = yaml.boolean("createKey", true);
  const timeoutMs = yaml.integer("timeoutMs", 5_000, { min: 1, max: 120_000 });
  const set = (name: string) => (env[name] === undefined || env[name] === "" ? undefined : env[name]);
  const secret = (name: string): Secret | undefined => {
    const value = set(name);
    return value === undefined ? undefined : createSecret(value);
  };

  const address = set("VAULT_ADDR");
  // The other VAULT_* variables alone do not select Vault: developers often have VAULT_TOKEN set.
  if (address === undefined) return undefined;
  if (parseHttpUrl(address) === undefined) problems.add("VAULT_ADDR", "must be an absolute http(s) URL such as https://vault.internal:8200");

  const token = secret("VAULT_TOKEN");
  const roleId = set("VAULT_ROLE_ID");
  const secretId = secret("VAULT_SECRET_ID");
  const kubernetesRole = set("VAULT_K8S_ROLE");
  const methods = [token !== undefined, roleId !== undefined || secretId !== undefined, kubernetesRole !== undefined].filter(Boolean);
  if (methods.length !== 1) {
    problems.add(
      "VAULT_ADDR",
      `set exactly one Vault auth method (${methods.length} set): VAULT_TOKEN, VAULT_ROLE_ID + VAULT_SECRET_ID, or VAULT_K8S_ROLE (+ VAULT_K8S_TOKEN_PATH)`,
    );
  }
  if ((roleId === undefined) !== (secretId === undefined)) {
    problems.add(roleId === undefined ? "VAULT_ROLE_ID" : "VAULT_SECRET_ID", "AppRole needs both VAULT_ROLE_ID and VAULT_SECRET_ID");
  }
  const kubernetesTokenPath = set("VAULT_K8S_TOKEN_PATH");
  if (kubernetesTokenPath !== undefined && kubernetesRole === undefined) {
    problems.add("VAULT_K8S_TOKEN_PATH", "is set but VAULT_K8S_ROLE is not");
  }

  const mount = set("VAULT_TRANSIT_MOUNT") ?? "transit";
  if (!MOUNT.test(mount)) problems.add("VAULT_TRANSIT_MOUNT", "must be a Vault path such as transit or team/transit");
  const key = set("VAULT_TRANSIT_KEY") ?? "oauth-broker";
  if (!KEY_NAME.test(key)) problems.add("VAULT_TRANSIT_KEY", "must be a key name of letters, digits, '.', '_' and '-'");

  return {
    address,
    token,
    roleId,
    secretId,
    kubernetesRole,
    kubernetesTokenPath: kubernetesTokenPath ?? DEFAULT_KUBERNETES_TOKEN_PATH,
    namespace: set("VAULT_NAMESPACE"),
    mount,
    key,
    createKey,
    timeoutMs,
  };
}
