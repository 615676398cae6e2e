/**
 * Reasons of the key service: a GetAccessToken whose stored token Vault (the transit emulator)
 * must decrypt, while Vault is sealed, refuses the broker, lost the key, or is handed a
 * ciphertext it cannot or may not open.
 */
import { Code } from "@connectrpc/connect";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import type { ReasonWorld } from "../support/reason-world.js";
import type { VaultEmulator } from "../support/vault-transit-emulator.js";
import { userFor, type WireCase, type WireCases } from "../support/wire-cases.js";

export interface KeysWorld extends ReasonWorld {
  readonly vault: VaultEmulator;
}

/** The transit key the broker uses by default. */
export const TRANSIT_KEY = "oauth-broker";

const VAULT_KEYS = ["backend", "path", "status"];

/** A fresh integration (its token not yet read), then `fault` while the call decrypts its token. */
function whileDecrypting(tag: string, status: Code, metadataKeys: string[], fault: (world: KeysWorld, integrationId: string) => Promise<() => void | Promise<void>>): WireCase<KeysWorld> {
  return {
    status,
    metadataKeys,
    produce: async (world, wire) => {
      const integrationId = await world.connect(userFor(tag, wire));
      const undo = await fault(world, integrationId);
      try {
        return await wire.unary(TokenService.method.getAccessToken, { integrationId }, { authorization: world.admin });
      } finally {
        await undo();
      }
    },
  };
}

/** `POST <mount>/keys/<key>/<action>` with the root token, as an operator would. */
async function operate(vault: VaultEmulator, action: "rotate" | "config", body: Record<string, unknown> = {}): Promise<void> {
  const response = await fetch(`${vault.url}/v1/${vault.mount}/keys/${TRANSIT_KEY}/${action}`, {
    method: "POST",
    headers: { "x-vault-token": vault.rootToken, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`Vault ${action} answered ${response.status}`);
}

const nothingToUndo = () => undefined;

export const KEY_CASES = {
  KEY_SERVICE_UNAVAILABLE: {
    ...whileDecrypting("KEY_SERVICE_UNAVAILABLE", Code.Unavailable, VAULT_KEYS, async ({ vault }) => {
      vault.seal();
      return () => vault.unseal();
    }),
    retry: true,
  },
  KEY_SERVICE_PERMISSION_DENIED: whileDecrypting("KEY_SERVICE_PERMISSION_DENIED", Code.Internal, VAULT_KEYS, async ({ vault }) => {
    vault.failNext(403);
    return nothingToUndo;
  }),
  KEY_SERVICE_NOT_FOUND: whileDecrypting("KEY_SERVICE_NOT_FOUND", Code.Internal, VAULT_KEYS, async ({ vault }) => {
    vault.failNext(404);
    return nothingToUndo;
  }),
  KEY_SERVICE_REFUSED: whileDecrypting("KEY_SERVICE_REFUSED", Code.Internal, VAULT_KEYS, async ({ vault }) => {
    vault.failNext(400);
    return nothingToUndo;
  }),
  KEY_SERVICE_BAD_RESPONSE: whileDecrypting("KEY_SERVICE_BAD_RESPONSE", Code.Internal, ["backend", "path"], async ({ vault }) => {
    vault.failNext(200);
    return nothingToUndo;
  }),
  KEY_NOT_FOUND: whileDecrypting("KEY_NOT_FOUND", Code.Internal, VAULT_KEYS, async ({ vault }) => vault.hideKey(TRANSIT_KEY)),
  CIPHERTEXT_MALFORMED: whileDecrypting("CIPHERTEXT_MALFORMED", Code.Internal, VAULT_KEYS, async ({ db }, integrationId) => {
    await db.sql`update token_sets set access_token_ciphertext = 'vault:v1:this-is-not-a-ciphertext' where integration_id = ${integrationId}`;
    return nothingToUndo;
  }),
  CIPHERTEXT_AUTHENTICATION_FAILED: whileDecrypting("CIPHERTEXT_AUTHENTICATION_FAILED", Code.Internal, VAULT_KEYS, async (world, integrationId) => {
    // Another row's ciphertext: bound to that row's integration id, it cannot open as this one's.
    const other = await world.connect(`${integrationId}-neighbour`);
    await world.db.sql`update token_sets set access_token_ciphertext = (select access_token_ciphertext from token_sets where integration_id = ${other})
                       where integration_id = ${integrationId}`;
    return nothingToUndo;
  }),
  CIPHERTEXT_VERSION_DISALLOWED: whileDecrypting("CIPHERTEXT_VERSION_DISALLOWED", Code.Internal, VAULT_KEYS, async ({ vault }) => {
    const latest = vault.key(TRANSIT_KEY)?.latestVersion ?? 1;
    await operate(vault, "rotate");
    await operate(vault, "config", { min_decryption_version: latest + 1 });
    return () => operate(vault, "config", { min_decryption_version: 1 });
  }),
} satisfies WireCases<KeysWorld>;
