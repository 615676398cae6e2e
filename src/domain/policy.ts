/**
 * Who may do what: the role × operation rules, whose integrations a caller may act on, and each
 * service's rule (providers, scopes, acting for users, extra operations). Pure: no I/O, so a
 * reload builds a new `Policy` and swaps it in whole (`createPolicyHolder`). Wire method names
 * and the configuration's `rpcs` patterns are mapped to operations in transport/.
 *
 * Roles: `user` acts for itself only; `service` gets tokens and reads as its policy allows;
 * `admin` may do everything, for every user. A service with no policy (and no "*" rule) may only
 * list providers.
 */
import { BrokerError } from "./errors.js";
import type { Operation } from "./operations.js";
import type { ProviderScopes } from "./provider-profile.js";
import type { Principal } from "./types.js";

const USER_OPERATIONS: ReadonlySet<Operation> = new Set<Operation>([
  "startAuthorization",
  "completeAuthorization",
  "listIntegrations",
  "getIntegration",
  "refreshIntegration",
  "syncIntegrations",
  "deleteIntegration",
  "watchIntegrations",
  "listProviders",
]);

/** What a service with a policy may do before its rule's `operations` add more: tokens and reads. */
const SERVICE_OPERATIONS: ReadonlySet<Operation> = new Set<Operation>([
  "getAccessToken",
  "listIntegrations",
  "getIntegration",
  "watchIntegrations",
  "listProviders",
]);

const UNPOLICED_SERVICE_OPERATIONS: ReadonlySet<Operation> = new Set<Operation>(["listProviders"]);

/** One service's rule; configuration maps its `policies` entries to these. */
export interface ServiceRule {
  /** Service principal subject this rule applies to ("*" for every service). */
  readonly service: string;
  readonly providers: readonly string[];
  /** Scopes the service may require of a token; "*" allows all of a provider's allowed scopes. */
  readonly scopes: readonly string[];
  readonly actForUsers: boolean;
  /** Operations allowed beyond tokens and reads. */
  readonly operations: readonly Operation[];
  /** Refuse tokens whose granted scopes exceed `scopes`. */
  readonly strict: boolean;
}

export interface PolicyRules {
  readonly policies: readonly ServiceRule[];
}

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

export interface Policy {
  /** Whether the principal's role (and, for a service, its rule) allows the operation. */
  mayPerform(principal: Principal, operation: Operation): boolean;
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
  servicePolicy(principal: Principal): ServiceRule | undefined;
  checkRequestedScopes(provider: ProviderScopes, scopes: readonly string[]): void;
}

export function createPolicy(config: PolicyRules): Policy {
  const exact = new Map<string, ServiceRule>();
  for (const rule of config.policies) if (rule.service !== "*" && !exact.has(rule.service)) exact.set(rule.service, rule);
  const fallback = config.policies.find((rule) => rule.service === "*");

  function servicePolicy(principal: Principal): ServiceRule | undefined {
    if (principal.kind !== "service") return undefined;
    return exact.get(principal.subject) ?? fallback;
  }

  function mayPerform(principal: Principal, operation: Operation): boolean {
    switch (principal.kind) {
      case "admin":
        return true;
      case "user":
        return USER_OPERATIONS.has(operation);
      case "service": {
        const rule = servicePolicy(principal);
        if (rule === undefined) return UNPOLICED_SERVICE_OPERATIONS.has(operation);
        return SERVICE_OPERATIONS.has(operation) || rule.operations.includes(operation);
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
    if (principal.kind === "user" && !mayPerform(principal, "getAccessToken")) {
      throw new BrokerError("permission_denied", `${who(principal)} may not get access tokens`, {
        reason: "RPC_NOT_ALLOWED",
        metadata: { operation: "getAccessToken" },
      });
    }
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
    mayPerform,
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
 * The `not_found` a user gets for another user's integration. integration-access.ts uses it for a missing id
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
export function allowedScopesOf(provider: ProviderScopes): ReadonlySet<string> {
  return new Set([...provider.allowedScopes, ...provider.defaultScopes]);
}

/**
 * `invalid_argument` naming each requested scope outside the provider's allowed set, except
 * those `leftToClient` (protocol scopes the provider client adds itself).
 */
export function checkRequestedScopes(provider: ProviderScopes, scopes: readonly string[], leftToClient: ReadonlySet<string> = new Set()): void {
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

/** `P`: the policy as its holder's readers need it (transport's adds the wire method check). */
export interface PolicyHolder<P extends Policy = Policy> {
  current(): P;
  /** Swaps the whole policy at once: calls in flight keep the one they started with. */
  replace(next: P): void;
}

/** Holds the live policy so a SIGHUP reload replaces it without dropping calls. */
export function createPolicyHolder<P extends Policy>(initial: P): PolicyHolder<P> {
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
