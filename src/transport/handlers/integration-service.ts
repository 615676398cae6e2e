/**
 * IntegrationService: list, get and refresh, with the callers' roles and policy. Never returns
 * a token. Page tokens (AIP-158) are opaque, bound to the filters they were issued for, and
 * keyset-based, so pages stay stable while integrations are added.
 */
import { createHash } from "node:crypto";
import type { ServiceImpl } from "@connectrpc/connect";
import { BrokerError, invalidArgument } from "../../domain/errors.js";
import { integrationNotFound, type PolicyHolder } from "../../domain/policy.js";
import type { TokenService } from "../../domain/tokens/token-service.js";
import type { Integration, IntegrationStatus } from "../../domain/types.js";
import type { IntegrationService } from "../../gen/oauthbroker/v1/integration_service_pb.js";
import { requestContextOf } from "../service-binding.js";
import { watchChanges, type ChangeFeedStore, type IntegrationChangeType } from "../../domain/change-feed.js";
import type { DeletionRevocation, IntegrationDeletion } from "../../domain/integration-deletion.js";
import type { IntegrationSync } from "../../domain/integration-sync.js";
import { IntegrationEventType, RevocationOutcome } from "../../gen/oauthbroker/v1/integration_service_pb.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { fromProtoStatus, toProtoIntegration } from "./integration-mapping.js";

export interface IntegrationReader {
  get(id: string): Promise<Integration | undefined>;
  list(query: {
    userId?: string | undefined;
    provider?: string | undefined;
    providers?: readonly string[] | undefined;
    status?: IntegrationStatus | undefined;
    pageSize: number;
    after?: { createdAt: Date; id: string } | undefined;
  }): Promise<{ items: Integration[]; next?: { createdAt: Date; id: string } | undefined }>;
}

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

function filterHash(filter: object): string {
  return createHash("sha256").update(JSON.stringify(filter)).digest("base64url").slice(0, 16);
}

export function encodePageToken(cursor: { createdAt: Date; id: string }, filter: object): string {
  return Buffer.from(JSON.stringify({ c: cursor.createdAt.toISOString(), i: cursor.id, f: filterHash(filter) })).toString("base64url");
}

/** `rpc`: the method whose earlier answer the token must come from, named in the refusal. */
export function decodePageToken(token: string, filter: object, rpc = "ListIntegrations"): { createdAt: Date; id: string } {
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { c?: unknown; i?: unknown; f?: unknown };
    const createdAt = new Date(String(parsed.c));
    if (typeof parsed.i !== "string" || !UUID.test(parsed.i) || Number.isNaN(createdAt.getTime())) throw new Error("malformed");
    if (parsed.f !== filterHash(filter)) {
      throw invalidArgument("page_token", "was issued for other filters: keep user_id, provider and status unchanged while paging");
    }
    return { createdAt, id: parsed.i };
  } catch (error) {
    if (error instanceof BrokerError) throw error;
    throw invalidArgument("page_token", `is not a page token from a previous ${rpc} response`);
  }
}

function requireId(id: string): string {
  if (!UUID.test(id)) throw invalidArgument("id", "must be an integration id (a UUID)");
  return id;
}

export function createIntegrationServiceHandlers(deps: {
  integrations: IntegrationReader;
  tokenService: Pick<TokenService, "refreshNow">;
  policy: PolicyHolder;
  deletion: IntegrationDeletion;
  sync: IntegrationSync;
  changes: ChangeFeedStore;
}): ServiceImpl<typeof IntegrationService> {
  async function accessible(ctx: Parameters<typeof requestContextOf>[0], id: string): Promise<Integration> {
    const context = requestContextOf(ctx);
    // Refusals that do not depend on the id come first, so they say nothing about it.
    deps.policy.current().assertMayActForUsers(context.principal);
    const integration = await deps.integrations.get(requireId(id));
    // The same answer as for another user's integration: existence is not revealed.
    if (!integration) throw integrationNotFound(id);
    deps.policy.current().assertCanAccess(context.principal, integration.userId, { provider: integration.provider, integrationId: id });
    return integration;
  }

  return {
    async listIntegrations(request, ctx) {
      const context = requestContextOf(ctx);
      const policy = deps.policy.current();
      const userId = policy.resolveUser(context.principal, request.userId, "list_integrations");
      const pageSize = pageSizeOf(request.pageSize, DEFAULT_PAGE_SIZE);
      const status = fromProtoStatus(request.status);
      const filter = { u: request.userId, p: request.provider, s: request.status };
      const after = request.pageToken === "" ? undefined : decodePageToken(request.pageToken, filter);
      const page = await deps.integrations.list({
        userId,
        provider: request.provider || undefined,
        providers: policy.visibleProviders(context.principal),
        status,
        pageSize,
        after,
      });
      return {
        integrations: page.items.map(toProtoIntegration),
        nextPageToken: page.next ? encodePageToken(page.next, filter) : "",
      };
    },

    async getIntegration(request, ctx) {
      return { integration: toProtoIntegration(await accessible(ctx, request.id)) };
    },

    async refreshIntegration(request, ctx) {
      const integration = await accessible(ctx, request.id);
      const result = await deps.tokenService.refreshNow(requestContextOf(ctx), integration.id);
      return { integration: toProtoIntegration(result.integration), refreshed: result.refreshed };
    },

    async syncIntegrations(request, ctx) {
      const context = requestContextOf(ctx);
      const policy = deps.policy.current();
      const userId = policy.resolveUser(context.principal, request.userId, "sync_integrations");
      // Everyone's integrations at once is an operator's action, not a service's.
      if (userId === undefined && context.principal.kind !== "admin") {
        throw invalidArgument("user_id", `required when a ${context.principal.kind} calls SyncIntegrations (only admins sync every user)`);
      }
      const pageSize = pageSizeOf(request.pageSize, DEFAULT_SYNC_PAGE_SIZE);
      const filter = { sync: true, u: request.userId, p: request.provider };
      const after = request.pageToken === "" ? undefined : decodePageToken(request.pageToken, filter, "SyncIntegrations");
      const result = await deps.sync.sync(context, {
        userId,
        provider: request.provider || undefined,
        providers: policy.visibleProviders(context.principal),
        pageSize,
        after,
      });
      return {
        checked: result.checked,
        updated: result.updated,
        needsReauth: result.needsReauth,
        failed: result.failed,
        skipped: result.skipped,
        nextPageToken: result.next ? encodePageToken(result.next, filter) : "",
      };
    },

    async deleteIntegration(request, ctx) {
      const integration = await accessible(ctx, request.id);
      const result = await deps.deletion.delete(requestContextOf(ctx), integration);
      return { integration: toProtoIntegration(result.integration), revocation: REVOCATION_OUTCOMES[result.revocation] };
    },

    async *watchIntegrations(request, ctx) {
      const context = requestContextOf(ctx);
      const filter = () => {
        const policy = deps.policy.current();
        const userId = policy.resolveUser(context.principal, request.userId, "watch_integrations");
        return { userId, provider: request.provider || undefined, providers: policy.visibleProviders(context.principal) };
      };
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

