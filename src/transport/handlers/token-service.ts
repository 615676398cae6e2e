/**
 * TokenService: edge validation and proto ⇄ domain mapping. Which integration the caller may have
 * a token of is domain/integration-access.ts; the token lifecycle is domain/tokens/.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { invalidArgument } from "../../domain/errors.js";
import type { IntegrationAccess, TokenIntegrationRequest } from "../../domain/integration-access.js";
import type { IssuedToken, TokenService as DomainTokenService } from "../../domain/tokens/token-service.js";
import type { Integration, Principal, RequestContext, TokenSet } from "../../domain/types.js";
import {
  GetAccessTokenResponseSchema,
  type GetAccessTokenRequest,
  type GetAccessTokenResponse,
  type TokenService,
} from "../../gen/oauthbroker/v1/token_service_pb.js";
import { markReusable } from "../reusable-message.js";
import { callOf, requestContextOf } from "../service-binding.js";
import { toProtoIntegration } from "./integration-mapping.js";

const MAX_MIN_VALID_FOR_MS = 3_600_000;
const SCOPE = /^[\x21\x23-\x5B\x5D-\x7E]+$/; // RFC 6749 §3.3 scope-token

function durationMs(duration: Duration): number {
  return Number(duration.seconds) * 1000 + Math.floor(duration.nanos / 1e6);
}

/**
 * One response per (token set, integration) handed out: a warm token is answered with the same
 * message, whose encoding the gRPC listener then keeps (reusable-message.ts). Both keys are the
 * token service's own cached objects, so a refresh or an integration change makes a new one.
 */
const responseFor = createResponseMemo();

function createResponseMemo(): (issued: IssuedToken) => GetAccessTokenResponse {
  const byTokens = new WeakMap<TokenSet, { readonly integration: Integration; readonly response: GetAccessTokenResponse }>();
  return (issued) => {
    const known = byTokens.get(issued.tokens);
    if (known !== undefined && known.integration === issued.integration) return known.response;
    const response = markReusable(
      create(GetAccessTokenResponseSchema, {
        accessToken: issued.tokens.accessToken,
        tokenType: issued.tokens.tokenType,
        expireTime: timestampFromDate(issued.tokens.expiresAt),
        grantedScopes: [...issued.integration.grantedScopes],
        integration: toProtoIntegration(issued.integration),
      }),
    );
    byTokens.set(issued.tokens, { integration: issued.integration, response });
    return response;
  };
}

export interface TokenServiceHandlerDeps {
  readonly tokenService: DomainTokenService;
  readonly access: Pick<IntegrationAccess, "tokenIntegration" | "warmTokenIntegration">;
  readonly defaultMinValidForSeconds: number;
}

/** What a GetAccessToken request asks for, once its fields passed the edge checks. */
interface TokenAsk {
  readonly selector: TokenIntegrationRequest;
  readonly minValidForMs: number;
  readonly scopes: readonly string[];
}

function readTokenAsk(request: GetAccessTokenRequest, defaultMinValidForSeconds: number): TokenAsk {
  const byId = request.integrationId !== "";
  const byUser = request.userId !== "" || request.provider !== "" || request.externalAccountId !== "";
  if (byId === byUser) {
    throw invalidArgument("integration_id", "set either integration_id, or user_id + provider (+ external_account_id), not both and not neither");
  }
  if (!byId && request.provider === "") throw invalidArgument("provider", "required with user_id");
  const minValidForMs = request.minValidFor ? durationMs(request.minValidFor) : defaultMinValidForSeconds * 1000;
  if (request.minValidFor && (minValidForMs < 0 || minValidForMs > MAX_MIN_VALID_FOR_MS || request.minValidFor.nanos < 0)) {
    throw invalidArgument("min_valid_for", "must be between 0 s and 3600 s");
  }
  request.scopes.forEach((scope, index) => {
    if (!SCOPE.test(scope)) throw invalidArgument(`scopes[${index}]`, "must be a non-empty scope token without spaces");
  });
  const selector = byId
    ? { integrationId: request.integrationId }
    : { userId: request.userId, provider: request.provider, externalAccountId: request.externalAccountId };
  return { selector, minValidForMs, scopes: request.scopes };
}

/** A warm answer, and what counts it: to run in the same synchronous turn as the answer. */
export interface WarmTokenAnswer {
  readonly response: GetAccessTokenResponse;
  commit(ctx: RequestContext): void;
}

/** The same response headers on both paths. */
export const TOKEN_RESPONSE_HEADERS: ReadonlyArray<readonly [string, string]> = [["cache-control", "no-store"]];

export function createTokenServiceHandlers(deps: TokenServiceHandlerDeps): ServiceImpl<typeof TokenService> {
  return {
    async getAccessToken(request, ctx) {
      const ask = readTokenAsk(request, deps.defaultMinValidForSeconds);
      const context = requestContextOf(ctx);
      const integration = await deps.access.tokenIntegration(context.principal, ask.selector, ask.scopes, deps.tokenService);
      const issued = await deps.tokenService.tokenFor(context, integration, ask.minValidForMs, ask.scopes);
      const response = callOf(ctx).responseHeader;
      for (const [name, value] of TOKEN_RESPONSE_HEADERS) response.set(name, value);
      return responseFor(issued);
    },
  };
}

/**
 * GetAccessToken's answer when getAccessToken would give it at once — same edge checks, same
 * policy checks, token cached and valid, disclosure a counted repeat — or undefined: then
 * getAccessToken decides (errors, first disclosures, loads and refreshes are all its own).
 */
export function createWarmGetAccessToken(deps: TokenServiceHandlerDeps): (request: GetAccessTokenRequest, principal: Principal) => WarmTokenAnswer | undefined {
  return (request, principal) => {
    let ask: TokenAsk;
    try {
      ask = readTokenAsk(request, deps.defaultMinValidForSeconds);
    } catch {
      return undefined;
    }
    const integration = deps.access.warmTokenIntegration(principal, ask.selector, ask.scopes, deps.tokenService);
    if (integration === undefined) return undefined;
    const warm = deps.tokenService.warmTokenFor(principal, integration, ask.minValidForMs, ask.scopes);
    if (warm === undefined) return undefined;
    return { response: responseFor(warm.issued), commit: warm.commit };
  };
}
