/**
 * Chooses the encryption at rest: Vault transit when Vault is configured, otherwise the local
 * keyring in the data directory. Configuration validation already refuses the local keyring in
 * production without the explicit opt-in; this checks again, because a cipher whose keys sit
 * next to the data must never be chosen by accident.
 */
import type { Config } from "../config/types.js";
import type { Logger } from "../observability/logger.js";
import { BrokerError } from "../domain/errors.js";
import { createLocalKeyringCipher } from "./local-keyring-cipher.js";
import type { RotatableCipher } from "./rotatable-cipher.js";
import { createVaultTransitCipher } from "./vault-transit-cipher.js";
import type { FetchLike } from "./vault-http-client.js";

export interface CreateCipherOptions {
  /** Transport for Vault calls: the broker's outbound transport, or a test's; the global `fetch` otherwise. */
  readonly fetchImpl?: FetchLike | undefined;
}

export async function createCipher(config: Config, logger: Logger, options: CreateCipherOptions = {}): Promise<RotatableCipher> {
  if (config.vault !== undefined) {
    return createVaultTransitCipher({ config: config.vault, logger, fetchImpl: options.fetchImpl });
  }
  if (config.nodeEnv === "production" && !config.allowLocalKeyringInProduction) {
    throw new BrokerError(
      "failed_precondition",
      "NODE_ENV=production without Vault: configure VAULT_ADDR and credentials, or explicitly allow the local keyring in production",
      { reason: "LOCAL_KEYRING_REFUSED_IN_PRODUCTION" },
    );
  }
  return createLocalKeyringCipher({ dataDir: config.dataDir, logger });
}
