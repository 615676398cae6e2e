/**
 * Who may do what: the role × RPC rules, whose integrations a caller may act on, and each
 * service's policy (providers, scopes, acting for users, extra RPCs). Pure: no I/O, so a reload
 * builds a new `Policy` and swaps it in whole (`createPolicyHolder`).
 *
 * Roles: `user` acts for itself only; `service` gets tokens and reads as its policy allows;
 * `admin` may do everything, for every user. A service with no policy (and no "*" rule) may only
 * list providers.
 */
import type { ProviderConfig, ServicePolicy } from "../config/types.js";
import { BrokerError } from "./errors.js";
import type { Principal } from "./types.js";

const PACKAGE = "oauthbroker.v1";

/** Every broker RPC by full method name (`<package>.<Service>/<Method>`). */
export const RPC = {
  getAccessToken: `${PACKAGE}.TokenService/GetAccessToken`,
  startAuthorization: `${PACKAGE}.AuthorizationService/StartAuthorization`,
  completeAuthorization: `${PACKAGE}.AuthorizationService/CompleteAuthorization`,
  listIntegrations: `${PACKAGE}.IntegrationService/ListIntegrations`,
  getIntegration: `${PACKAGE}.IntegrationService/GetIntegration`,
  refreshIntegration: `${PACKAGE}.IntegrationService/RefreshIntegration`,
  syncIntegrations: `${PACKAGE}.IntegrationService/SyncIntegrations`,
  deleteIntegration: `${PACKAGE}.IntegrationService/DeleteIntegration`,
  watchIntegrations: `${PACKAGE}.IntegrationService/WatchIntegrations`,
  listProviders: `${PACKAGE}.ProviderService/ListProviders`,
  getStatus: `${PACKAGE}.StatusService/GetStatus`,
  listAuditEvents: `${PACKAGE}.AuditService/ListAuditEvents`,
} as const;

export const BROKER_RPCS: readonly string[] = Object.values(RPC);

const USER_RPCS: ReadonlySet<string> = new Set([
  RPC.startAuthorization,
  RPC.completeAuthorization,
  RPC.listIntegrations,
  RPC.getIntegration,
  RPC.refreshIntegration,
  RPC.syncIntegrations,
  RPC.deleteIntegration,
  RPC.watchIntegrations,
  RPC.listProviders,
]);

/** What a service with a policy may call before its `rpcs` add more: tokens and reads. */
const SERVICE_RPCS: ReadonlySet<string> = new Set([
  RPC.getAccessToken,
  RPC.listIntegrations,
  RPC.getIntegration,
  RPC.watchIntegrations,
  RPC.listProviders,
]);

const UNPOLICED_SERVICE_RPCS: ReadonlySet<string> = new Set([RPC.listProviders]);

/** The call acts for one user: the result is that user. */
export type ActPurpose = "start_authorization" | "get_access_token";
/** The user id only narrows what is read: `undefined` means every user the caller may see. */
export type FilterPurpose = "list_integrations" | "sync_integrations" | "watch_integrations";

export interface TokenRequestCheck {
  readonly provider: string;
  readonly requiredScopes: readonly string[];
  /** Scopes of the stored grant; omitted before the grant is loaded (skips the strict check). */
  readonly grantedScopes?: readonly string[] | undefined;
}

export interface PolicyConfig {
  readonly policies: readonly ServicePolicy[];
  readonly providers: readonly ProviderConfig[];
}

export interface Policy {
  /** Throws `permission_denied` (reason RPC_NOT_ALLOWED) when the principal may not call the method. */
  authorizeRpc(principal: Principal, fullMethod: string): void;
  /** The user the call acts for; never an unchecked request field. */
  resolveUser(principal: Principal, requestedUserId: string, purpose: ActPurpose): string;
  resolveUser(principal: Principal, requestedUserId: string, purpose: FilterPurpose): string | undefined;
  /** GetAccessToken: provider, required scopes and (strict) granted scopes against the service's policy. */
  checkTokenRequest(principal: Principal, request: TokenRequestCheck): void;
  /** A service may only touch providers its policy lists; users and admins any. */
  assertProviderAllowed(principal: Principal, provider: string): void;
  /**
   * Throws `permission_denied` (CANNOT_ACT_FOR_USERS) for a service whose policy does not set
   * actForUsers. Depends on the principal alone, so it may answer before any lookup.
   */
  assertMayActForUsers(principal: Principal): void;
  canSeeIntegration(principal: Principal, integrationUserId: string, provider?: string): boolean;
  /**
   * Throws when the principal may not act on the integration: `not_found` for users (another
   * user's integration is indistinguishable from a missing one), `permission_denied` for services.
   */
  assertCanAccess(
    principal: Principal,
    integrationUserId: string,
    options?: { readonly provider?: string | undefined; readonly integrationId?: string | undefined },
  ): void;
  /** Providers whose integrations the principal may see; `undefined` means all. */
  visibleProviders(principal: Principal): readonly string[] | undefined;
  /** The rule that applies to a service principal (exact subject first, then "*"). */
  servicePolicy(principal: Principal): ServicePolicy | undefined;
  checkRequestedScopes(provider: ProviderConfig, scopes: readonly string[]): void;
}

export function createPolicy(config: PolicyConfig): Policy {
  const exact = new Map<string, ServicePolicy>();
  for (const rule of config.policies) if (rule.service !== "*" && !exact.has(rule.service)) exact.set(rule.service, rule);
  const fallback = config.policies.find((rule) => rule.service === "*");

  function servicePolicy(principal: Principal): ServicePolicy | undefined {
    if (principal.kind !== "service") return undefined;
    return exact.get(principal.subject) ?? fallback;
  }

  function authorizeRpc(principal: Principal, fullMethod: string): void {
    if (mayCall(principal, fullMethod)) return;
    throw new BrokerError("permission_denied", `${who(principal)} may not call ${fullMethod}`, {
      reason: "RPC_NOT_ALLOWED",
      metadata: { method: fullMethod },
    });
  }

  function mayCall(principal: Principal, fullMethod: string): boolean {
    switch (principal.kind) {
      case "admin":
        return true;
      case "user":
        return USER_RPCS.has(fullMethod);
      case "service": {
        const rule = servicePolicy(principal);
        if (rule === undefined) return UNPOLICED_SERVICE_RPCS.has(fullMethod);
        return SERVICE_RPCS.has(fullMethod) || rule.rpcs.some((pattern) => rpcMatches(pattern, fullMethod));
      }
    }
  }

  function resolveUser(principal: Principal, requestedUserId: string, purpose: ActPurpose): string;
  function resolveUser(principal: Principal, requestedUserId: string, purpose: FilterPurpose): string | undefined;
  function resolveUser(
    principal: Principal,
    requestedUserId: string,
    purpose: ActPurpose | FilterPurpose,
  ): string | undefined {
    const acting = purpose === "start_authorization" || purpose === "get_access_token";
    switch (principal.kind) {
      case "user":
        if (requestedUserId !== "" && requestedUserId !== principal.subject) {
          throw new BrokerError("permission_denied", `${who(principal)} may only act for itself, not for another user`, {
            reason: "CANNOT_ACT_FOR_OTHER_USER",
          });
        }
        return principal.subject;
      case "service":
        assertActsForUsers(principal);
        break;
      case "admin":
        break;
    }
    if (requestedUserId !== "") return requestedUserId;
    if (!acting) return undefined;
    throw new BrokerError("invalid_argument", `user_id: required when a ${principal.kind} calls ${purposeLabel(purpose)}`, {
      fieldViolations: [{ field: "user_id", description: `required when a ${principal.kind} calls` }],
    });
  }

  function assertMayActForUsers(principal: Principal): void {
    if (principal.kind === "service") assertActsForUsers(principal);
  }

  function assertActsForUsers(principal: Principal): void {
    if (servicePolicy(principal)?.actForUsers === true) return;
    throw new BrokerError(
      "permission_denied",
      `${who(principal)} may not act for users: its policy does not set actForUsers`,
      { reason: "CANNOT_ACT_FOR_USERS", metadata: { service: principal.subject } },
    );
  }

  function providerAllowed(principal: Principal, provider: string): boolean {
    if (principal.kind !== "service") return true;
    const rule = servicePolicy(principal);
    return rule !== undefined && (rule.providers.includes("*") || rule.providers.includes(provider));
  }

  function assertProviderAllowed(principal: Principal, provider: string): void {
    if (providerAllowed(principal, provider)) return;
    throw new BrokerError("permission_denied", `${who(principal)} may not use provider ${provider}`, {
      reason: "PROVIDER_NOT_ALLOWED",
      metadata: { provider },
    });
  }

  function checkTokenRequest(principal: Principal, request: TokenRequestCheck): void {
    if (principal.kind === "admin") return;
    if (principal.kind === "user") authorizeRpc(principal, RPC.getAccessToken);
    assertProviderAllowed(principal, request.provider);
    const rule = servicePolicy(principal);
    if (rule === undefined || rule.scopes.includes("*")) return;
    const notAllowed = unique(request.requiredScopes.filter((scope) => !rule.scopes.includes(scope)));
    if (notAllowed.length > 0) {
      throw new BrokerError(
        "permission_denied",
        `${who(principal)} may not require ${plural("scope", notAllowed)} ${notAllowed.join(", ")} of provider ${request.provider}`,
        { reason: "SCOPE_NOT_ALLOWED", metadata: { provider: request.provider, scopes: notAllowed.join(" ") } },
      );
    }
    if (!rule.strict || request.grantedScopes === undefined) return;
    // A token cannot be narrowed: handing out an over-broad grant would leak the excess.
    const excess = unique(request.grantedScopes.filter((scope) => !rule.scopes.includes(scope)));
    if (excess.length > 0) {
      throw new BrokerError(
        "permission_denied",
        `the ${request.provider} grant includes ${plural("scope", excess)} ${excess.join(", ")} beyond what ${who(principal)} may use (strict policy)`,
        { reason: "GRANT_EXCEEDS_POLICY", metadata: { provider: request.provider, scopes: excess.join(" ") } },
      );
    }
  }

  function canSeeIntegration(principal: Principal, integrationUserId: string, provider?: string): boolean {
    switch (principal.kind) {
      case "admin":
        return true;
      case "user":
        return integrationUserId === principal.subject;
      case "service":
        return (
          servicePolicy(principal)?.actForUsers === true && (provider === undefined || providerAllowed(principal, provider))
        );
    }
  }

  function assertCanAccess(
    principal: Principal,
    integrationUserId: string,
    options: { readonly provider?: string | undefined; readonly integrationId?: string | undefined } = {},
  ): void {
    if (principal.kind === "user") {
      if (integrationUserId !== principal.subject) {
        throw integrationNotFound(
          options.integrationId,
          new HiddenDenial("OTHER_USERS_INTEGRATION", `${who(principal)} asked for an integration of another user`, options.integrationId),
        );
      }
      return;
    }
    if (principal.kind === "service") {
      assertActsForUsers(principal);
      // An integration of a provider outside the policy answers like a missing id: the
      // difference would tell the service which ids exist.
      if (options.provider !== undefined && !providerAllowed(principal, options.provider)) {
        throw integrationNotFound(
          options.integrationId,
          new HiddenDenial("INTEGRATION_NOT_ACCESSIBLE", `${who(principal)} asked for an integration of provider ${options.provider}`, options.integrationId),
        );
      }
    }
  }

  function visibleProviders(principal: Principal): readonly string[] | undefined {
    if (principal.kind !== "service") return undefined;
    const rule = servicePolicy(principal);
    if (rule === undefined) return [];
    return rule.providers.includes("*") ? undefined : rule.providers;
  }

  return {
    authorizeRpc,
    resolveUser,
    checkTokenRequest,
    assertProviderAllowed,
    assertMayActForUsers,
    canSeeIntegration,
    assertCanAccess,
    visibleProviders,
    servicePolicy,
    checkRequestedScopes,
  };
}

/**
 * The `not_found` a user gets for another user's integration. Handlers use it for a missing id
 * too, so the two answers are identical.
 */
export function integrationNotFound(integrationId?: string, denial?: HiddenDenial): BrokerError {
  return new BrokerError(
    "not_found",
    integrationId === undefined || integrationId === "" ? "integration not found" : `integration ${integrationId} not found`,
    { reason: "INTEGRATION_NOT_FOUND", cause: denial },
  );
}

/**
 * The real reason behind a `not_found` that hides a denial, carried as its `cause` (never sent):
 * the caller must not learn that the integration exists, but the audit trail records the denial.
 */
export class HiddenDenial extends Error {
  override readonly name = "HiddenDenial";
  constructor(
    readonly reason: string,
    message: string,
    readonly integrationId?: string | undefined,
  ) {
    super(message);
  }
}

/** The denial a `not_found` hides, if it hides one. */
export function hiddenDenialOf(error: unknown): HiddenDenial | undefined {
  const cause = error instanceof Error ? error.cause : undefined;
  return cause instanceof HiddenDenial ? cause : undefined;
}

/**
 * Scopes a caller may ask a provider for: its configured allowed set, plus its default scopes
 * (always requested when none are given, so always allowed).
 */
export function allowedScopesOf(provider: ProviderConfig): ReadonlySet<string> {
  return new Set([...provider.allowedScopes, ...provider.defaultScopes]);
}

/**
 * `invalid_argument` naming each requested scope outside the provider's allowed set, except
 * those `leftToClient` (protocol scopes the provider client adds itself).
 */
export function checkRequestedScopes(provider: ProviderConfig, scopes: readonly string[], leftToClient: ReadonlySet<string> = new Set()): void {
  const allowed = allowedScopesOf(provider);
  const refused = (scope: string): boolean => !allowed.has(scope) && !leftToClient.has(scope);
  const violations = scopes.flatMap((scope, index) =>
    refused(scope) ? [{ field: `scopes[${index}]`, description: `${scope} is not allowed for provider ${provider.id}` }] : [],
  );
  if (violations.length === 0) return;
  const names = unique(scopes.filter(refused));
  throw new BrokerError(
    "invalid_argument",
    `scopes: ${names.join(", ")} ${names.length === 1 ? "is" : "are"} not allowed for provider ${provider.id}; allowed: ${[...allowed].join(" ") || "(none)"}`,
    { fieldViolations: violations, metadata: { provider: provider.id, scopes: names.join(" ") } },
  );
}

/**
 * Policy mistakes to report at start-up (and on reload, before swapping): unknown providers,
 * RPC patterns that match nothing, scopes no listed provider allows, duplicate rules.
 */
export function policyProblems(config: PolicyConfig): string[] {
  const problems: string[] = [];
  const providers = new Map(config.providers.map((provider) => [provider.id, provider]));
  const seen = new Set<string>();
  config.policies.forEach((rule, index) => {
    const where = `policies[${index}] (${rule.service || "no service"})`;
    if (rule.service.trim() === "") problems.push(`${where}: service must name a service principal or "*"`);
    if (seen.has(rule.service)) problems.push(`${where}: a second rule for the same service`);
    seen.add(rule.service);
    for (const provider of rule.providers) {
      if (provider !== "*" && !providers.has(provider)) problems.push(`${where}: unknown provider ${provider}`);
    }
    for (const pattern of rule.rpcs) {
      if (!BROKER_RPCS.some((method) => rpcMatches(pattern, method))) {
        problems.push(`${where}: rpcs entry ${pattern} matches no RPC (use e.g. ${RPC.startAuthorization} or IntegrationService/*)`);
      }
    }
    const ruleProviders = rule.providers.includes("*")
      ? [...providers.values()]
      : rule.providers.flatMap((id) => providers.get(id) ?? []);
    const reachable = new Set(ruleProviders.flatMap((provider) => [...allowedScopesOf(provider)]));
    for (const scope of rule.scopes) {
      if (scope !== "*" && !reachable.has(scope)) {
        problems.push(`${where}: scope ${scope} is not allowed by any of its providers`);
      }
    }
  });
  return problems;
}

/**
 * Matches a policy `rpcs` entry: a full method name, `<Service>/*`, either with or without the
 * `oauthbroker.v1.` package, or "*" for every broker RPC.
 */
export function rpcMatches(pattern: string, fullMethod: string): boolean {
  if (pattern === "*") return BROKER_RPCS.includes(fullMethod);
  const qualified = pattern.startsWith(`${PACKAGE}.`) ? pattern : `${PACKAGE}.${pattern}`;
  if (qualified.endsWith("/*")) return fullMethod.startsWith(qualified.slice(0, -1));
  return qualified === fullMethod;
}

export interface PolicyHolder {
  current(): Policy;
  /** Swaps the whole policy at once: calls in flight keep the one they started with. */
  replace(next: Policy): void;
}

/** Holds the live policy so a SIGHUP reload replaces it without dropping calls. */
export function createPolicyHolder(initial: Policy): PolicyHolder {
  let policy = initial;
  return {
    current: () => policy,
    replace(next) {
      policy = next;
    },
  };
}

function who(principal: Principal): string {
  return `${principal.subject} (${principal.kind})`;
}

function purposeLabel(purpose: ActPurpose | FilterPurpose): string {
  return purpose === "start_authorization" ? "StartAuthorization" : "GetAccessToken";
}

function plural(word: string, items: readonly string[]): string {
  return items.length === 1 ? word : `${word}s`;
}

function unique(items: readonly string[]): string[] {
  return [...new Set(items)];
}
