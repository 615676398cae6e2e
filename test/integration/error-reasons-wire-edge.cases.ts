/**
 * Reasons of the request edge and of the broker's own dependencies: bytes that are not the
 * method's message, a request over the size limit, fields over theirs, a stored ciphertext of a
 * key version the local keyring lacks, PostgreSQL cut off or refusing a write or a schema it was
 * not migrated to, and a replica shutting down (last: it leaves the broker draining).
 */
import { Code } from "@connectrpc/connect";
import { AuthorizationService } from "../../src/gen/oauthbroker/v1/authorization_service_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { TokenService } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import type { ReasonWorld } from "../support/reason-world.js";
import type { TcpProxy } from "../support/tcp-proxy.js";
import { userFor, type WireCases } from "../support/wire-cases.js";

export interface EdgeWorld extends ReasonWorld {
  /** Between the broker and PostgreSQL. */
  readonly proxy: TcpProxy;
}

/** `limits.maxRequestBytes` of the world these rows run in. */
export const MAX_REQUEST_BYTES = 65_536;

const LIST_PROVIDERS = `/${ProviderService.typeName}/${ProviderService.method.listProviders.name}`;

export const EDGE_CASES = {
  MALFORMED_REQUEST: {
    status: Code.InvalidArgument,
    metadataKeys: [],
    // A field header promising more bytes than follow.
    produce: (world, wire) => wire.rawUnary(LIST_PROVIDERS, Uint8Array.from([0x0a, 0xff, 0x01]), { authorization: world.admin }),
  },
  REQUEST_TOO_LARGE: {
    status: Code.ResourceExhausted,
    metadataKeys: ["max_request_bytes"],
    produce: (world, wire) => wire.rawUnary(LIST_PROVIDERS, new Uint8Array(MAX_REQUEST_BYTES + 1), { authorization: world.admin }),
  },
  FIELD_LIMIT_EXCEEDED: {
    status: Code.InvalidArgument,
    metadataKeys: [],
    produce: (world, wire) =>
      wire.unary(TokenService.method.getAccessToken, { userId: "alice", provider: "lookalike", scopes: Array.from({ length: 500 }, (_, i) => `scope-${i}`) }, { authorization: world.admin }),
  },
  KEY_VERSION_UNKNOWN: {
    status: Code.Internal,
    metadataKeys: ["backend"],
    produce: async (world, wire) => {
      const integrationId = await world.connect(userFor("KEY_VERSION_UNKNOWN", wire));
      await world.db.sql`update token_sets set access_token_ciphertext = 'local:v99:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' where integration_id = ${integrationId}`;
      return wire.unary(TokenService.method.getAccessToken, { integrationId }, { authorization: world.admin });
    },
  },
  DATABASE_UNAVAILABLE: {
    status: Code.Unavailable,
    metadataKeys: ["operation"],
    retry: true,
    produce: async (world, wire) => {
      const integrationId = await world.connect(userFor("DATABASE_UNAVAILABLE", wire));
      world.proxy.cut();
      try {
        return await wire.unary(TokenService.method.getAccessToken, { integrationId }, { authorization: world.admin });
      } finally {
        world.proxy.restore();
      }
    },
  },
  // PostgreSQL's own refusals the broker has no better name for: a schema that is not the one it migrated.
  INTERNAL: {
    status: Code.Internal,
    metadataKeys: [],
    produce: async (world, wire) => {
      const integrationId = await world.connect(userFor("INTERNAL", wire));
      await world.db.sql`alter table token_sets rename column token_type to token_type_elsewhere`;
      try {
        return await wire.unary(TokenService.method.getAccessToken, { integrationId }, { authorization: world.admin });
      } finally {
        await world.db.sql`alter table token_sets rename column token_type_elsewhere to token_type`;
      }
    },
  },
  ALREADY_EXISTS: {
    status: Code.AlreadyExists,
    metadataKeys: [],
    produce: async (world, wire) => {
      const user = userFor("ALREADY_EXISTS", wire);
      await world.connect(user, { account: `${user}-first` });
      // A uniqueness the broker does not know of: one integration per user and provider.
      await world.db.sql.unsafe(`create unique index one_integration_of_${wire.wire} on integrations (user_id, provider) where user_id = '${user}'`);
      try {
        const state = await world.session(user);
        return await wire.unary(AuthorizationService.method.completeAuthorization, { provider: "lookalike", state, code: `code-for-${user}-second` }, { authorization: world.admin });
      } finally {
        await world.db.sql.unsafe(`drop index one_integration_of_${wire.wire}`);
      }
    },
  },
  DRAINING: {
    status: Code.Unavailable,
    metadataKeys: [],
    retry: true,
    produce: (world, wire) => {
      world.broker.broker.drain();
      return wire.unary(ProviderService.method.listProviders, {}, { authorization: world.admin });
    },
  },
} satisfies WireCases<EdgeWorld>;
