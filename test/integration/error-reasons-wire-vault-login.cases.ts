/**
 * Reasons of logging in to Vault again while serving a call: the broker authenticates with a
 * Kubernetes service-account token, Vault forgets the broker's token, and the file the new
 * login needs is gone.
 */
import { writeFile, rm } from "node:fs/promises";
import { Code } from "@connectrpc/connect";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import type { ReasonWorld } from "../support/reason-world.js";
import type { VaultEmulator } from "../support/vault-transit-emulator.js";
import type { WireCases } from "../support/wire-cases.js";

export interface VaultLoginWorld extends ReasonWorld {
  readonly vault: VaultEmulator;
  /** Where the service-account token is mounted (VAULT_K8S_TOKEN_PATH). */
  readonly jwtPath: string;
}

export const KUBERNETES_ROLE = "oauth-broker";
export const SERVICE_ACCOUNT_JWT = "service-account-jwt-of-the-broker";

export const VAULT_LOGIN_CASES = {
  VAULT_KUBERNETES_JWT_UNREADABLE: {
    status: Code.Internal,
    metadataKeys: ["path"],
    produce: async (world, wire) => {
      const integrationId = await world.connect(`kubernetes-jwt-unreadable-${wire.wire}`);
      // The projected token is gone (unmounted) just as Vault forgets the broker's login.
      await rm(world.jwtPath);
      world.vault.revokeIssuedTokens();
      try {
        return await wire.unary(TokenService.method.getAccessToken, { integrationId }, { authorization: world.admin });
      } finally {
        await writeFile(world.jwtPath, SERVICE_ACCOUNT_JWT);
      }
    },
  },
} satisfies WireCases<VaultLoginWorld>;
