/**
 * The authorization-code flow that connects a user's third-party account (RFC 6749 §4.1 with
 * PKCE, RFC 7636; checks from RFC 9700 and oauth-client-security.md): StartAuthorization creates
 * a one-time, expiring session and returns the provider's authorization URL; the provider's
 * redirect comes back to `GET /oauth/callback/<provider>` (or, for apps that receive it
 * themselves, to CompleteAuthorization); the code is exchanged, the account identified, and the
 * integration created or updated with its token set encrypted.
 *
 * Browser binding (RFC 9700 §4.7, CSRF and session fixation): when a signed-in user's browser
 * starts the flow, the broker also sets a random binding value as an HttpOnly, SameSite=Lax
 * cookie scoped to the provider's callback path, and stores `sha256(state + "." + binding)` as
 * the session's state hash. The callback hashes the state with the cookie it receives, so a
 * state replayed into another browser (an attacker's link, a leaked URL) finds no session.
 * Flows a service starts for a user have no browser of their own: their hash is `sha256(state)`,
 * and the callback falls back to it when no bound session matches. Neither the state nor the
 * binding is stored, so a database reader cannot complete anyone's flow.
 */
import { createFlowContext } from "./authorization-context.js";
import { createAuthorizationCompletion } from "./authorization-completion.js";
import { createStartAuthorization } from "./authorization-start.js";
import type { AuthorizationService, AuthorizationServiceDeps } from "./authorization-types.js";

export { DEFAULT_EXCHANGE_TIMEOUT_MS } from "./authorization-context.js";
export { callbackErrorCode, sanitizeErrorCode } from "./authorization-outcome.js";
export { MAX_SESSION_TTL_SECONDS } from "./authorization-start.js";
export { flowCookieName, stateHash } from "./authorization-state.js";
export type {
  AuthorizationService,
  AuthorizationServiceDeps,
  AuthorizationSettings,
  BrowserBinding,
  CallbackInput,
  CallbackOutcome,
  CompleteAuthorizationInput,
  CompleteAuthorizationResult,
  StartAuthorizationInput,
  StartAuthorizationResult,
} from "./authorization-types.js";

/**
 * The flow's three steps, one module each: start (authorization-start.ts), the redirect back
 * (authorization-completion.ts) and the grant it carries (authorization-grant.ts).
 */
export function createAuthorizationService(deps: AuthorizationServiceDeps): AuthorizationService {
  const flow = createFlowContext(deps);
  return { start: createStartAuthorization(flow), ...createAuthorizationCompletion(flow) };
}
