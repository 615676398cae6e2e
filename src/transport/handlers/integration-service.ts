/**
 * IntegrationService: proto ⇄ domain for list, get, refresh, sync, delete and watch. Who may use
 * which integration is domain/integration-access.ts; never returns a token. Page tokens
 * (transport/page-token.ts) are keyset positions, so pages stay stable while integrations are added.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import { invalidArgument } from "../../domain/errors.js";
import type { IntegrationAccess } from "../../domain/integration-access.js";
import type { IntegrationReader } from "../../domain/ports.js";
import type { TokenService } from "../../domain/tokens/token-service.js";
import type { IntegrationService } from "../../gen/oauthbroker/v1/integration_service_pb.js";
import { requestContextOf } from "../service-binding.js";
import { pageTokenCodec, type PageTokenCodec } from "../page-token.js";
import { watchChanges, type ChangeFeedStore, type IntegrationChangeType } from "../../domain/change-feed.js";
import type { DeletionRevocation, IntegrationDeletion } from "../../domain/integration-deletion.js";
import type { IntegrationSync } from "../../domain/integration-sync.js";
import { IntegrationEventType, RevocationOutcome } from "../../gen/oauthbroker/v1/integration_service_pb.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { fromProtoStatus, toProtoIntegration } from "./integration-mapping.js";

const DEFAULT_PAGE_SIZE = 50;
const DEFAULT_SYNC_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 500;

const EVENT_TYPES: Record<IntegrationChangeType, IntegrationEventType> = {
  created: IntegrationEventType.CREATED,
  refreshed: IntegrationEventType.REFRESHED,
  refresh_failed: IntegrationEventType.REFRESH_FAILED,
  needs_reauth: IntegrationEventType.NEEDS_REAUTH,
  scopes_changed: IntegrationEventType.SCOPES_CHANGED,
  deleted: IntegrationEventType.DELETED,
  reauthorized: IntegrationEventType.REAUTHORIZED,
};

const REVOCATION_OUTCOMES: Record<DeletionRevocation, RevocationOutcome> = {
  revoked: RevocationOutcome.REVOKED,
  not_supported: RevocationOutcome.NOT_SUPPORTED,
  pending: RevocationOutcome.PENDING,
  already_deleted: RevocationOutcome.ALREADY_DELETED,
};

/** Watch cursors are opaque to callers; inside, a position in the change feed. */
export function encodeWatchCursor(position: number): string {
  return Buffer.from(`feed:${position}`).toString("base64url");
}

export function decodeWatchCursor(cursor: string): number {
  const match = /^feed:(\d{1,18})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  if (!match?.[1]) throw invalidArgument("cursor", "is not a cursor from a previous WatchIntegrations response");
  return Number(match[1]);
}

function pageSizeOf(requested: number, defaultSize: number): number {
  if (requested < 0 || requested > MAX_PAGE_SIZE) {
    throw invalidArgument("page_size", `must be between 0 and ${MAX_PAGE_SIZE} (0 means ${defaultSize})`);
  }
  return requested || defaultSize;
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface KeysetPosition {
  readonly createdAt: Date;
  readonly id: string;
}

/** `rpc`: the method whose earlier answer the token must come from, named in the refusal. */
function keysetPageTokens(rpc: string): PageTokenCodec<KeysetPosition> {
  return pageTokenCodec<KeysetPosition>({
    fieldsOf: (position) => ({ c: position.createdAt.toISOString(), i: position.id }),
    positionOf: (fields) => {
      const createdAt = new Date(String(fields["c"]));
      const id = fields["i"];
      return typeof id === "string" && UUID.test(id) && !Number.isNaN(createdAt.getTime()) ? { createdAt, id } : undefined;
    },
    notIssued: `is not a page token from a previous ${rpc} response`,
    otherFilters: "was issued for other filters: keep user_id, provider and status unchanged while paging",
  });
}

const listPageTokens = keysetPageTokens("ListIntegrations");
const syncPageTokens = keysetPageTokens("SyncIntegrations");

export function createIntegrationServiceHandlers(deps: {
  integrations: IntegrationReader;
  tokenService: Pick<TokenService, "refreshNow">;
  access: IntegrationAccess;
  deletion: IntegrationDeletion;
  sync: IntegrationSync;
  changes: ChangeFeedStore;
}): ServiceImpl<typeof IntegrationService> {
  const find = (id: string) => deps.integrations.get(id);

  return {
    async listIntegrations(request, ctx) {
      const context = requestContextOf(ctx);
      const { userId, providers } = deps.access.scope(context.principal, request.userId, "list_integrations");
      const pageSize = pageSizeOf(request.pageSize, DEFAULT_PAGE_SIZE);
      const status = fromProtoStatus(request.status);
      const filter = { u: request.userId, p: request.provider, s: request.status };
      const after = request.pageToken === "" ? undefined : listPageTokens.decode(request.pageToken, filter);
      const page = await deps.integrations.list({
        userId,
        provider: request.provider || undefined,
        providers,
        status,
        pageSize,
        after,
      });
      return {
        integrations: page.items.map(toProtoIntegration),
        nextPageToken: page.next ? listPageTokens.encode(page.next, filter) : "",
      };
    },

    async getIntegration(request, ctx) {
      return { integration: toProtoIntegration(await deps.access.one(requestContextOf(ctx).principal, request.id, find)) };
    },

    async refreshIntegration(request, ctx) {
      const context = requestContextOf(ctx);
      const integration = await deps.access.one(context.principal, request.id, find);
      const result = await deps.tokenService.refreshNow(context, integration.id);
      return { integration: toProtoIntegration(result.integration), refreshed: result.refreshed };
    },

    async syncIntegrations(request, ctx) {
      const context = requestContextOf(ctx);
      const { userId, providers } = deps.access.syncScope(context.principal, request.userId);
      const pageSize = pageSizeOf(request.pageSize, DEFAULT_SYNC_PAGE_SIZE);
      const filter = { sync: true, u: request.userId, p: request.provider };
      const after = request.pageToken === "" ? undefined : syncPageTokens.decode(request.pageToken, filter);
      const result = await deps.sync.sync(context, {
        userId,
        provider: request.provider || undefined,
        providers,
        pageSize,
        after,
      });
      return {
        checked: result.checked,
        updated: result.updated,
        needsReauth: result.needsReauth,
        failed: result.failed,
        skipped: result.skipped,
        nextPageToken: result.next ? syncPageTokens.encode(result.next, filter) : "",
      };
    },

    async deleteIntegration(request, ctx) {
      const context = requestContextOf(ctx);
      const integration = await deps.access.one(context.principal, request.id, find);
      const result = await deps.deletion.delete(context, integration);
      return { integration: toProtoIntegration(result.integration), revocation: REVOCATION_OUTCOMES[result.revocation] };
    },

    async *watchIntegrations(request, ctx) {
      const context = requestContextOf(ctx);
      // Read again for every batch, so a policy reload narrows a running watch.
      const filter = () => ({ ...deps.access.scope(context.principal, request.userId, "watch_integrations"), provider: request.provider || undefined });
      filter();
      const from = request.cursor === "" ? undefined : decodeWatchCursor(request.cursor);
      for await (const item of watchChanges(deps.changes, filter, from, ctx.signal)) {
        const cursor = encodeWatchCursor(item.cursor);
        if (!item.change) {
          yield { cursor };
          continue;
        }
        yield {
          cursor,
          event: {
            cursor,
            type: EVENT_TYPES[item.change.type],
            time: timestampFromDate(item.change.time),
            integration: toProtoIntegration(item.change.integration),
          },
        };
      }
    },
  };
}

