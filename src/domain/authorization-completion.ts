/**
 * The provider's redirect back: `GET /oauth/callback/<provider>` (the browser) or
 * CompleteAuthorization (an app that receives the redirect itself). The session is found by the
 * hash of its state, with the browser's binding cookie first, and is used up either way.
 */
import type { FlowContext } from "./authorization-context.js";
import { createGrantReceiver } from "./authorization-grant.js";
import { asBrokerError, callbackErrorCode, failureEvent, sessionInvalid } from "./authorization-outcome.js";
import { stateHash } from "./authorization-state.js";
import type {
  AuthorizationService,
  CallbackInput,
  CallbackOutcome,
  CompleteAuthorizationInput,
  CompleteAuthorizationResult,
} from "./authorization-types.js";
import { invalidArgument } from "./errors.js";
import { auditCaller, epochMs } from "./ports.js";
import { withOutcome } from "./return-to.js";
import type { AuthorizationSession, Principal, RequestContext } from "./types.js";

const MAX_STATE_LENGTH = 512;

interface ConsumedSession {
  readonly session: AuthorizationSession;
  /** Found through the browser's binding cookie (not the unbound fallback). */
  readonly consumedBinding: boolean;
}

export function createAuthorizationCompletion(flow: FlowContext): Pick<AuthorizationService, "handleCallback" | "complete"> {
  const receiveGrant = createGrantReceiver(flow);

  /** The bound session first (the cookie came with the request), then an unbound one. */
  async function consumeSession(state: string, binding: string | undefined): Promise<ConsumedSession | undefined> {
    if (state === "" || state.length > MAX_STATE_LENGTH) return undefined;
    if (binding !== undefined && binding !== "") {
      const bound = await flow.deps.sessions.consume(stateHash(state, binding));
      if (bound !== undefined) return { session: bound, consumedBinding: true };
    }
    const unbound = await flow.deps.sessions.consume(stateHash(state));
    return unbound === undefined ? undefined : { session: unbound, consumedBinding: false };
  }

  /** Session checks shared by the callback and CompleteAuthorization, after ownership. */
  function checkSession(session: AuthorizationSession, provider: string): void {
    if (session.provider !== provider) throw sessionInvalid("PROVIDER_MISMATCH", provider);
    if (session.expiresAt.getTime() <= epochMs(flow.clock)) throw sessionInvalid("EXPIRED_STATE", provider);
  }

  async function handleCallback(input: CallbackInput): Promise<CallbackOutcome> {
    const state = input.query.get("state") ?? "";
    const network = { requestId: input.requestId, peer: input.peer };
    let consumed: ConsumedSession | undefined;
    try {
      consumed = await consumeSession(state, input.binding);
    } catch (error) {
      return { kind: "rejected", error: asBrokerError(error), code: "server_error" };
    }
    if (consumed === undefined) {
      const error = sessionInvalid("INVALID_STATE", input.provider);
      await flow.recordFailure(failureEvent(error, input.provider, undefined, network));
      return { kind: "rejected", error, code: "invalid_state" };
    }
    const { session, consumedBinding } = consumed;
    const caller = { ...network, caller: session.userId, callerKind: "user" };
    try {
      checkSession(session, input.provider);
      const integration = await receiveGrant(session, state, input.query, caller);
      return {
        kind: "connected",
        integration,
        location: withOutcome(session.returnTo, { integration_id: integration.id, status: "connected" }),
        consumedBinding,
      };
    } catch (thrown) {
      const error = asBrokerError(thrown);
      await flow.recordFailure(failureEvent(error, input.provider, session, caller));
      const code = callbackErrorCode(error, input.query.get("error") ?? undefined);
      return { kind: "failed", error, code, location: withOutcome(session.returnTo, { error: code }), consumedBinding };
    }
  }

  async function complete(ctx: RequestContext, input: CompleteAuthorizationInput): Promise<CompleteAuthorizationResult> {
    flow.provider(input.provider);
    flow.deps.policy().assertProviderAllowed(ctx.principal, input.provider);
    if (input.state === "") throw invalidArgument("state", "required: the state parameter of the provider's redirect");
    if (input.code === "" && input.error === "") {
      throw invalidArgument("code", "required unless the provider's redirect carried an error");
    }
    const caller = auditCaller(ctx);
    const session = (await consumeSession(input.state, input.binding))?.session;
    try {
      if (session === undefined || !actsFor(ctx.principal, session.userId)) throw sessionInvalid("INVALID_STATE", input.provider);
      checkSession(session, input.provider);
      const query = new URLSearchParams({ state: input.state });
      if (input.code !== "") query.set("code", input.code);
      if (input.iss !== "") query.set("iss", input.iss);
      if (input.error !== "") query.set("error", input.error);
      if (input.errorDescription !== "") query.set("error_description", input.errorDescription);
      const integration = await receiveGrant(session, input.state, query, caller, ctx.deadline);
      return { integration, returnTo: session.returnTo };
    } catch (thrown) {
      const error = asBrokerError(thrown);
      await flow.recordFailure(failureEvent(error, input.provider, session, caller));
      throw error;
    }
  }

  /**
   * The session's user, or a service or admin the policy lets act for that user. A user who
   * is not the owner gets the same answer as for an unknown state.
   */
  function actsFor(principal: Principal, userId: string): boolean {
    const policy = flow.deps.policy();
    if (principal.kind === "user") return principal.subject === userId;
    policy.resolveUser(principal, userId, "start_authorization");
    return true;
  }

  return { handleCallback, complete };
}
