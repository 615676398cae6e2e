/**
 * The authorization flow's inputs, outcomes and dependencies (authorization-service.ts builds
 * the flow from them).
 */
import type { AuthorizationIntegrationStore, AuthorizationSessionStore, ProviderDirectory } from "./authorization-ports.js";
import type { BrokerError } from "./errors.js";
import type { Policy } from "./policy.js";
import type { AuditLog, Cipher, Clock, Logger } from "./ports.js";
import type { Integration, RequestContext } from "./types.js";

export interface AuthorizationSettings {
  /** Allowed `return_to` prefixes (origin + path prefix); the first is the default. */
  readonly returnToAllowList: readonly string[];
  readonly sessionTtlSeconds: number;
}

export interface AuthorizationServiceDeps {
  readonly providers: ProviderDirectory;
  /** The live policy (a getter, so a reload applies to the next call). */
  readonly policy: () => Pick<Policy, "resolveUser" | "assertProviderAllowed">;
  readonly sessions: AuthorizationSessionStore;
  readonly integrations: AuthorizationIntegrationStore;
  readonly cipher: Pick<Cipher, "encrypt" | "decrypt" | "encryptBatch">;
  readonly audit: AuditLog;
  readonly settings: () => AuthorizationSettings;
  /** The broker's external base URL: https makes the binding cookie `Secure`. */
  readonly publicUrl: URL;
  readonly clock?: Clock | undefined;
  /** Throws `rate_limited` when the user started too many authorizations (per user, not per caller). */
  readonly limitStart?: ((userId: string) => void) | undefined;
  /** Told after a reconnect replaced an integration's tokens (token cache invalidation). */
  readonly onIntegrationChanged?: ((integrationId: string) => void) | undefined;
  readonly logger?: Pick<Logger, "warn"> | undefined;
  /** Upper bound for the whole code exchange (token endpoint and account lookup). */
  readonly exchangeTimeoutMs?: number | undefined;
}

export interface StartAuthorizationInput {
  readonly provider: string;
  readonly scopes: readonly string[];
  readonly returnTo: string;
  readonly userId: string;
}

/** The binding cookie to send with the StartAuthorization response (browser callers only). */
export interface BrowserBinding {
  readonly cookieName: string;
  readonly value: string;
  /** The provider's callback path: the browser sends the cookie there and nowhere else. */
  readonly path: string;
  readonly maxAgeSeconds: number;
  readonly secure: boolean;
}

export interface StartAuthorizationResult {
  readonly authorizationUrl: string;
  readonly expiresAt: Date;
  readonly sessionId: string;
  readonly browserBinding: BrowserBinding | undefined;
}

export interface CallbackInput {
  /** The provider named by the callback path. */
  readonly provider: string;
  /** The query the provider redirected the browser back with. */
  readonly query: URLSearchParams;
  /** The value of the provider's binding cookie, when the browser sent one. */
  readonly binding: string | undefined;
  readonly requestId: string;
  readonly peer: string;
}

/**
 * `consumedBinding`: the session found was the one the browser's binding cookie belongs to, so
 * the cookie has served its flow. A callback that found no session, or a service-started
 * (unbound) one, must leave the cookie alone: it may belong to a flow still in progress.
 */
export type CallbackOutcome =
  | { readonly kind: "connected"; readonly integration: Integration; readonly location: string; readonly consumedBinding: boolean }
  /** The flow failed after its session was found: back to the app with `error=<code>`. */
  | { readonly kind: "failed"; readonly error: BrokerError; readonly code: string; readonly location: string; readonly consumedBinding: boolean }
  /** No session, so no trusted `return_to`: the caller renders an error page. */
  | { readonly kind: "rejected"; readonly error: BrokerError; readonly code: "invalid_state" | "server_error" };

export interface CompleteAuthorizationInput {
  readonly provider: string;
  readonly state: string;
  readonly code: string;
  readonly iss: string;
  readonly error: string;
  readonly errorDescription: string;
  /** A binding cookie the app forwarded from the browser, if any. */
  readonly binding?: string | undefined;
}

export interface CompleteAuthorizationResult {
  readonly integration: Integration;
  readonly returnTo: string;
}

export interface AuthorizationService {
  start(ctx: RequestContext, input: StartAuthorizationInput): Promise<StartAuthorizationResult>;
  /** `GET /oauth/callback/<provider>`: never throws for a flow failure, reports it instead. */
  handleCallback(input: CallbackInput): Promise<CallbackOutcome>;
  complete(ctx: RequestContext, input: CompleteAuthorizationInput): Promise<CompleteAuthorizationResult>;
}
