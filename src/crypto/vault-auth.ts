/**
 * The broker's Vault token over its lifetime. Token auth: looked up at start, renewed with
 * `renew-self` at about 2/3 of its TTL when renewable. AppRole and Kubernetes: logged in at start,
 * renewed the same way, and logged in again when renewal no longer extends the token (max TTL),
 * when it has expired, or when a call answers 403 with it (one attempt, see `recover`).
 * Calls never wait for a timer: `currentToken()` logs in first when the token is already past
 * its expiry, so an expired token costs a login, not a failed call.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "../observability/logger.js";
import type { VaultConfig } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import { classifyVaultError, vaultBrokerError } from "./vault-errors.js";
import { NO_TOKEN, tokenHeaders, type VaultHttpClient } from "./vault-http-client.js";

export type VaultAuthMethod = "token" | "approle" | "kubernetes";

export interface VaultAuth {
  readonly method: VaultAuthMethod;
  start(): Promise<void>;
  /** A token to call with; logs in again first when a login-based token has expired. */
  currentToken(): Promise<string>;
  /**
   * After a call with `usedToken` answered 403: obtains a fresh token when the method can log in
   * (true: retry the call once), false for a static token.
   */
  recover(usedToken: string): Promise<boolean>;
  /** Whether Vault still accepts the token (lookup-self), to name the cause of a 403. */
  tokenAccepted(): Promise<boolean | undefined>;
  close(): void;
}

export interface VaultAuthDeps {
  readonly client: VaultHttpClient;
  readonly config: VaultConfig;
  readonly logger: Logger;
  readonly now?: () => number;
  readonly readTextFile?: (path: string) => Promise<string>;
}

interface TokenState {
  readonly token: string;
  /** ms since epoch; null: the token does not expire. */
  readonly expiresAt: number | null;
  readonly renewable: boolean;
  /** TTL granted at login (or found at start), to notice renewals capped by a max TTL. */
  readonly grantedTtlMs: number;
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
}

function authMethodOf(config: VaultConfig): VaultAuthMethod {
  if (config.token !== undefined) return "token";
  if (config.roleId !== undefined) return "approle";
  if (config.kubernetesRole !== undefined) return "kubernetes";
  throw new BrokerError(
    "failed_precondition",
    "Vault is configured without credentials: set VAULT_TOKEN, VAULT_ROLE_ID (+ VAULT_SECRET_ID) or a Kubernetes role",
    { reason: "VAULT_CREDENTIALS_MISSING" },
  );
}

/** Smallest delay between two scheduled renewals, so a tiny TTL never spins. */
const MIN_DELAY_MS = 250;

export function createVaultAuth(deps: VaultAuthDeps): VaultAuth {
  const { client, config, logger } = deps;
  const now = deps.now ?? (() => Date.now());
  const readTextFile = deps.readTextFile ?? ((path: string) => readFile(path, "utf8"));
  const method = authMethodOf(config);
  const canLogin = method !== "token";
  let state: TokenState = { token: "", expiresAt: null, renewable: false, grantedTtlMs: 0 };
  let timer: NodeJS.Timeout | undefined;
  let loginInFlight: Promise<void> | undefined;
  let closed = false;

  function schedule(delayMs: number): void {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (closed) return;
    timer = setTimeout(() => void refresh(), Math.max(MIN_DELAY_MS, delayMs));
    timer.unref();
  }

  function adopt(next: TokenState): void {
    state = next;
    if (next.expiresAt === null) return;
    schedule(((next.expiresAt - now()) * 2) / 3);
  }

  function parseAuth(response: unknown, path: string): { token: string; ttlMs: number; renewable: boolean } {
    const auth = record(record(response)?.["auth"]);
    const token = auth?.["client_token"];
    const lease = auth?.["lease_duration"];
    if (typeof token !== "string" || token === "" || typeof lease !== "number") {
      throw new BrokerError("key_service_error", "the key service (Vault) answered a login without a token", {
        reason: "KEY_SERVICE_BAD_RESPONSE",
        metadata: { backend: "vault-transit", path },
      });
    }
    return { token, ttlMs: lease * 1000, renewable: auth?.["renewable"] === true };
  }

  async function login(): Promise<void> {
    const path = method === "approle" ? "auth/approle/login" : "auth/kubernetes/login";
    let body: Record<string, string>;
    if (method === "approle") {
      body = { role_id: config.roleId ?? "" };
      if (config.secretId !== undefined) body["secret_id"] = config.secretId.reveal();
    } else {
      let jwt: string;
      try {
        jwt = (await readTextFile(config.kubernetesTokenPath)).trim();
      } catch (error) {
        throw new BrokerError("key_service_error", "cannot read the Kubernetes service-account token for Vault login", {
          reason: "VAULT_KUBERNETES_JWT_UNREADABLE",
          metadata: { path: config.kubernetesTokenPath },
          cause: error,
        });
      }
      body = { role: config.kubernetesRole ?? "", jwt };
    }
    let response: unknown;
    try {
      response = await client.write(path, body, NO_TOKEN);
    } catch (error) {
      const failure = classifyVaultError(error);
      const brokerError = vaultBrokerError(failure, path);
      if (failure.kind === "unavailable") {
        logger.warn({ event: "vault_login_failed", method, path, status: failure.status, vaultError: failure.detail }, `Vault login unavailable: ${failure.detail}`);
      } else {
        logger.error({ event: "vault_login_failed", method, path, status: failure.status, vaultError: failure.detail }, `Vault refused login: ${failure.detail} on ${path}`);
      }
      throw brokerError;
    }
    const auth = parseAuth(response, path);
    adopt({
      token: auth.token,
      expiresAt: auth.ttlMs > 0 ? now() + auth.ttlMs : null,
      renewable: auth.renewable,
      grantedTtlMs: auth.ttlMs,
    });
    logger.info({ event: "vault_login", method, ttlSeconds: auth.ttlMs / 1000, renewable: auth.renewable }, "Vault login succeeded");
  }

  function relogin(): Promise<void> {
    loginInFlight ??= login().finally(() => {
      loginInFlight = undefined;
    });
    return loginInFlight;
  }

  /** When a renewal or login failed: try again well before the token runs out. */
  function retrySoon(): void {
    if (state.expiresAt === null) return;
    const remaining = state.expiresAt - now();
    if (remaining <= 0) return; // expired: the next call logs in again (or fails, for a static token)
    schedule(Math.min(5000, remaining / 3));
  }

  async function refresh(): Promise<void> {
    timer = undefined;
    if (closed) return;
    const path = "auth/token/renew-self";
    try {
      if (!state.renewable) {
        if (canLogin) {
          await relogin();
        } else {
          logger.warn(
            { event: "vault_token_expiring", expiresAt: state.expiresAt === null ? null : new Date(state.expiresAt).toISOString() },
            "the Vault token is not renewable and will expire: provide a new token before then",
          );
        }
        return;
      }
      const auth = parseAuth(await client.write(path, {}, tokenHeaders(state.token)), path);
      // A renewal that no longer extends the token much means it is reaching its max TTL.
      if (canLogin && (auth.ttlMs <= 0 || !auth.renewable || auth.ttlMs < state.grantedTtlMs / 3)) {
        await relogin();
        return;
      }
      // A static token at its max TTL: stop renewing (the next refresh warns that it will expire).
      const capped = !canLogin && auth.ttlMs < state.grantedTtlMs / 3;
      adopt({
        token: state.token,
        expiresAt: auth.ttlMs > 0 ? now() + auth.ttlMs : null,
        renewable: auth.renewable && !capped,
        grantedTtlMs: state.grantedTtlMs,
      });
      logger.debug({ event: "vault_token_renewed", ttlSeconds: auth.ttlMs / 1000 }, "Vault token renewed");
    } catch (error) {
      if (closed) return;
      if (error instanceof BrokerError) {
        // A login failure, already logged.
        retrySoon();
        return;
      }
      const failure = classifyVaultError(error);
      if (canLogin && failure.kind !== "unavailable") {
        try {
          await relogin();
          return;
        } catch {
          retrySoon();
          return;
        }
      }
      const log = failure.kind === "unavailable" ? logger.warn.bind(logger) : logger.error.bind(logger);
      log({ event: "vault_token_renew_failed", path, status: failure.status, vaultError: failure.detail }, `Vault token renewal failed: ${failure.detail}`);
      retrySoon();
    }
  }

  async function lookupSelf(token: string): Promise<Record<string, unknown>> {
    const response = await client.read("auth/token/lookup-self", tokenHeaders(token));
    return record(record(response)?.["data"]) ?? {};
  }

  return {
    method,
    async start() {
      if (canLogin) {
        await relogin();
        return;
      }
      const token = config.token?.reveal() ?? "";
      const path = "auth/token/lookup-self";
      let data: Record<string, unknown>;
      try {
        data = await lookupSelf(token);
      } catch (error) {
        const failure = classifyVaultError(error);
        if (failure.kind === "forbidden") {
          throw new BrokerError("key_service_error", "Vault refused VAULT_TOKEN (invalid, expired or revoked)", {
            reason: "KEY_SERVICE_PERMISSION_DENIED",
            metadata: { backend: "vault-transit", path },
            cause: new Error(`Vault answered 403: ${failure.detail} on ${path}`),
          });
        }
        throw vaultBrokerError(failure, path);
      }
      const ttl = typeof data["ttl"] === "number" ? data["ttl"] : 0;
      const renewable = data["renewable"] === true;
      if (ttl > 0 && !renewable) {
        logger.warn({ event: "vault_token_not_renewable", ttlSeconds: ttl }, "the Vault token is not renewable: the broker stops working with Vault when it expires");
      }
      adopt({ token, expiresAt: ttl > 0 ? now() + ttl * 1000 : null, renewable, grantedTtlMs: ttl * 1000 });
    },
    async currentToken() {
      if (canLogin && state.expiresAt !== null) {
        const margin = Math.min(1000, state.grantedTtlMs / 10);
        if (now() >= state.expiresAt - margin) await relogin();
      }
      return state.token;
    },
    async recover(usedToken) {
      if (!canLogin || closed) return false;
      if (state.token !== usedToken) return true;
      await relogin();
      return true;
    },
    async tokenAccepted() {
      try {
        await lookupSelf(state.token);
        return true;
      } catch (error) {
        const failure = classifyVaultError(error);
        return failure.kind === "forbidden" ? false : undefined;
      }
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
