/**
 * GetAccessToken's warm path on the gRPC listener: a call the interceptor chain and the handler
 * would answer at once — credentials verified before, method allowed, request within its limits,
 * token cached and valid, disclosure a counted repeat, rate limit not reached — is answered in
 * the turn it arrives in, without the chain's promises, the request context or the per-call
 * handler context (their cost, not the work, was most of a warm call: bench/warm-path.ts).
 *
 * It decides nothing itself: each step asks the component the chain asks (authenticator,
 * policy, limiter, integration access, token service, disclosure ledger) for the answer it would
 * give at once. Whenever one of them would wait, refuse or fail, the call goes the ordinary way
 * (grpc-adapter.ts), which answers it exactly as before — errors, audit events, first
 * disclosures, loads and refreshes all stay there. Nothing is counted until every check passed,
 * so a call sent on to the chain has taken nothing here: no rate-limit token, no metric, no line.
 * An answered call leaves the same log line, metrics, rate-limit take, repeat count and last-use
 * touch as through the chain.
 */
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Authenticator } from "../auth/authenticator.js";
import type { PolicyHolder } from "../domain/policy.js";
import type { RateLimiter } from "../domain/rate-limiter.js";
import type { Principal, RequestContext } from "../domain/types.js";
import { GetAccessTokenRequestSchema, TokenService, type GetAccessTokenRequest } from "../gen/oauthbroker/v1/token_service_pb.js";
import { ACCEPTABLE_REQUEST_ID, REQUEST_ID_HEADER } from "../observability/request-context.js";
import type { WarmGrpcUnary } from "./grpc-adapter.js";
import { TOKEN_RESPONSE_HEADERS, type WarmTokenAnswer } from "./handlers/token-service.js";
import type { ObserveInterceptor } from "./interceptors/observe.js";
import { principalBucketKey, type RateLimits } from "./interceptors/rate-limit.js";
import { withinLimits } from "./request-limits.js";
import { RequestRefusal } from "./request-refusal.js";
import { rpcClass } from "./rpc-operations.js";
import type { RpcPolicy } from "./rpc-policy.js";

const SERVICE = TokenService.typeName;
const METHOD = "GetAccessToken";
const FULL_METHOD = `${SERVICE}/${METHOD}`;
const RATE_CLASS = rpcClass(FULL_METHOD);

export interface WarmTokenPathDeps {
  readonly answer: (request: GetAccessTokenRequest, principal: Principal) => WarmTokenAnswer | undefined;
  readonly authenticator: Pick<Authenticator, "authenticateWarm">;
  readonly policyHolder: PolicyHolder<RpcPolicy>;
  readonly isDraining: () => boolean;
  readonly limiter: RateLimiter;
  readonly limits: () => RateLimits;
  readonly observe: Pick<ObserveInterceptor, "answeredAtOnce">;
}

/** The single string value of a metadata key, or undefined when absent, repeated or binary. */
function singleValue(metadata: grpc.Metadata, key: string): string | null | undefined {
  const values = metadata.get(key);
  if (values.length === 0) return null;
  const [value] = values;
  return values.length === 1 && typeof value === "string" ? value : undefined;
}

/** A class, not a literal: a literal's getter is a new closure on every call. */
class WarmCallContext implements RequestContext {
  readonly deadline = undefined;

  constructor(
    readonly principal: Principal,
    readonly requestId: string,
    readonly peer: string,
  ) {}

  // Nothing here waits: there is nothing to cut short.
  get signal(): AbortSignal {
    return new AbortController().signal;
  }
}

export function createWarmTokenPath(deps: WarmTokenPathDeps): WarmGrpcUnary {
  // Verified principals are the authenticator's frozen objects, one per token: each one's
  // bucket key and RPC decision are made once, the decision again after a policy reload.
  const bucketKeys = new WeakMap<Principal, string>();
  let decisions = new WeakMap<Principal, boolean>();
  let decidedBy: RpcPolicy | undefined;
  const mayCall = (principal: Principal): boolean => {
    const policy = deps.policyHolder.current();
    if (policy !== decidedBy) {
      decisions = new WeakMap();
      decidedBy = policy;
    }
    let allowed = decisions.get(principal);
    if (allowed === undefined) {
      try {
        policy.authorizeRpc(principal, FULL_METHOD);
        allowed = true;
      } catch {
        allowed = false;
      }
      decisions.set(principal, allowed);
    }
    return allowed;
  };

  const responseHeaders = new grpc.Metadata();
  for (const [name, value] of TOKEN_RESPONSE_HEADERS) responseHeaders.set(name, value);

  return (request, call, callback) => {
    const started = process.hrtime.bigint();
    if (request instanceof RequestRefusal || deps.isDraining()) return false;
    const authorization = singleValue(call.metadata, "authorization");
    if (authorization === null || authorization === undefined) return false;
    // The metadata object is the one the request gate admitted the call with: a lookup, not a second digest.
    const principal = deps.authenticator.authenticateWarm(authorization, call.metadata);
    if (principal === undefined || !mayCall(principal)) return false;
    // The deserializer hands over a refusal or a decoded request (grpc-adapter.ts).
    const message = request as GetAccessTokenRequest;
    if (!withinLimits(GetAccessTokenRequestSchema, message)) return false;
    const answer = deps.answer(message, principal);
    if (answer === undefined) return false;
    let bucket = bucketKeys.get(principal);
    if (bucket === undefined) {
      bucket = principalBucketKey(principal, RATE_CLASS);
      bucketKeys.set(principal, bucket);
    }
    // Refused: the chain takes again (a refused take leaves the bucket as it was) and answers.
    if (!deps.limiter.take(bucket, deps.limits().perPrincipal[RATE_CLASS]).allowed) return false;

    const offered = singleValue(call.metadata, REQUEST_ID_HEADER);
    const requestId = typeof offered === "string" && ACCEPTABLE_REQUEST_ID.test(offered) ? offered : randomUUID();
    const peer = call.getPeer();
    const context = new WarmCallContext(principal, requestId, peer);
    answer.commit(context);
    // A copy of headers validated once: only the request id is checked per call.
    const headers = responseHeaders.clone();
    headers.set(REQUEST_ID_HEADER, requestId);
    call.sendMetadata(headers);
    callback(null, answer.response);
    deps.observe.answeredAtOnce({ service: SERVICE, method: METHOD, protocol: "grpc", peer, requestId, principal }, started);
    return true;
  };
}
