/**
 * SyncIntegrations: reconciles stored integrations with the providers, one bounded page per call.
 *
 * A grant is validated by refreshing it (through the token service's single-flight, leased path,
 * so a sync never races a caller's refresh) and, where the provider has an account endpoint, by
 * reading the account with the fresh token: scopes and account details are updated, a refused
 * grant becomes NEEDS_REAUTH. Each integration is claimed first, so replicas syncing at once
 * split the work instead of repeating it.
 */
import { invalidArgument, isBrokerError } from "./errors.js";
import { auditCaller, type AuditLog, type Logger, type ProviderClients, type SyncCursor, type SyncStore } from "./ports.js";
import type { TokenService } from "./tokens/token-service.js";
import type { ExternalAccount, Integration, RequestContext } from "./types.js";

export type { SyncCursor, SyncStore } from "./ports.js";

export interface SyncRequest {
  readonly userId?: string | undefined;
  readonly provider?: string | undefined;
  readonly providers?: readonly string[] | undefined;
  readonly pageSize: number;
  readonly after?: SyncCursor | undefined;
}

export interface SyncResult {
  checked: number;
  updated: number;
  needsReauth: number;
  failed: number;
  skipped: number;
  next?: SyncCursor | undefined;
}

export interface IntegrationSyncDeps {
  readonly store: SyncStore;
  readonly tokenService: Pick<TokenService, "refreshNow" | "tokenFor" | "evict">;
  readonly providers: ProviderClients & { list(): ReadonlyArray<{ readonly id: string }> };
  readonly audit: AuditLog;
  readonly logger: Pick<Logger, "warn">;
  /** Provider calls at once per sync call: a large page must not flood one provider. */
  readonly concurrency?: number | undefined;
}

const CLAIM_MS = 120_000;

function sameAccount(a: ExternalAccount, b: ExternalAccount): boolean {
  const keys = new Set([...Object.keys(a.attributes), ...Object.keys(b.attributes)]);
  return a.name === b.name && [...keys].every((key) => a.attributes[key] === b.attributes[key]);
}

function sameScopes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(" ") === [...b].sort().join(" ");
}

export function createIntegrationSync(deps: IntegrationSyncDeps) {
  const concurrency = Math.max(1, deps.concurrency ?? 4);

  /** "updated", "checked" (unchanged) or "skipped"; throws what the provider said. */
  async function syncOne(ctx: RequestContext, integration: Integration): Promise<"updated" | "checked" | "skipped"> {
    const client = deps.providers.get(integration.provider);
    if (!client) return "skipped";
    if (!integration.hasRefreshToken && !client.fetchAccount) return "skipped";
    let current = integration;
    if (integration.hasRefreshToken) current = (await deps.tokenService.refreshNow(ctx, integration.id)).integration;
    let changed = !sameScopes(current.grantedScopes, integration.grantedScopes);
    if (client.fetchAccount) {
      const issued = await deps.tokenService.tokenFor(ctx, current, 0, [], { internal: true });
      let account: ExternalAccount;
      try {
        account = await client.fetchAccount(issued.tokens.accessToken);
      } catch (error) {
        // Without a refresh token the account call is the only test of the grant.
        if (isBrokerError(error, "integration_needs_reauth") && !integration.hasRefreshToken) {
          await deps.store.markNeedsReauth(integration.id, "access_revoked");
          deps.tokenService.evict(integration.id);
        }
        throw error;
      }
      if (account.id !== current.externalAccount.id) {
        deps.logger.warn({ integrationId: integration.id, provider: integration.provider }, "sync: the token now names another account; left unchanged");
        throw new Error("account mismatch");
      }
      if (!sameAccount(account, current.externalAccount)) {
        await deps.store.updateAccount(integration.id, account, current.grantedScopes);
        changed = true;
      }
    }
    return changed ? "updated" : "checked";
  }

  return {
    async sync(ctx: RequestContext, request: SyncRequest): Promise<SyncResult> {
      // A provider that is not configured has nothing to sync against: say so instead of answering zeros.
      if (request.provider !== undefined && !deps.providers.get(request.provider)) {
        const configured = deps.providers.list().map((p) => p.id);
        throw invalidArgument(
          "provider",
          `"${request.provider}" is not a configured provider; configured: ${configured.length > 0 ? configured.join(", ") : "none"}`,
        );
      }
      const page = await deps.store.list({ ...request, status: "active" });
      const result: SyncResult = { checked: 0, updated: 0, needsReauth: 0, failed: 0, skipped: 0, next: page.next };
      const queue = [...page.items];
      const worker = async () => {
        for (let integration = queue.shift(); integration; integration = queue.shift()) {
          if (!(await deps.store.claimForSync(integration.id, CLAIM_MS))) {
            result.skipped += 1;
            continue;
          }
          try {
            const outcome = await syncOne(ctx, integration);
            if (outcome === "skipped") result.skipped += 1;
            else {
              result.checked += 1;
              if (outcome === "updated") result.updated += 1;
            }
          } catch (error) {
            result.checked += 1;
            if (isBrokerError(error, "integration_needs_reauth")) result.needsReauth += 1;
            else result.failed += 1;
          } finally {
            await deps.store.finishSync(integration.id).catch(() => undefined);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
      await deps.audit.record({
        action: "integrations.synced",
        outcome: result.failed > 0 ? "failure" : "success",
        ...auditCaller(ctx),
        userId: request.userId,
        provider: request.provider,
        details: {
          checked: String(result.checked),
          updated: String(result.updated),
          needs_reauth: String(result.needsReauth),
          failed: String(result.failed),
          skipped: String(result.skipped),
        },
      });
      return result;
    },
  };
}

export type IntegrationSync = ReturnType<typeof createIntegrationSync>;
