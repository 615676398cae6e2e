/**
 * TokenService: edge validation and proto ⇄ domain mapping. Which integration the caller may have
 * a token of is domain/integration-access.ts; the token lifecycle is domain/tokens/.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { invalidArgument } from "../../domain/errors.js";
import type { IntegrationAccess } from "../../domain/integration-access.js";
import type { IssuedToken, TokenService as DomainTokenService } from "../../domain/tokens/token-service.js";
import type { Integration, TokenSet } from "../../domain/types.js";
import {
  GetAccessTokenResponseSchema,
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

export function createTokenServiceHandlers(deps: {
  tokenService: DomainTokenService;
  access: Pick<IntegrationAccess, "tokenIntegration">;
  defaultMinValidForSeconds: number;
}): ServiceImpl<typeof TokenService> {
  const responseFor = createResponseMemo();
  return {
    async getAccessToken(request, ctx) {
      const byId = request.integrationId !== "";
      const byUser = request.userId !== "" || request.provider !== "" || request.externalAccountId !== "";
      if (byId === byUser) {
        throw invalidArgument("integration_id", "set either integration_id, or user_id + provider (+ external_account_id), not both and not neither");
      }
      if (!byId && request.provider === "") throw invalidArgument("provider", "required with user_id");
      const minValidForMs = request.minValidFor ? durationMs(request.minValidFor) : deps.defaultMinValidForSeconds * 1000;
      if (request.minValidFor && (minValidForMs < 0 || minValidForMs > MAX_MIN_VALID_FOR_MS || request.minValidFor.nanos < 0)) {
        throw invalidArgument("min_valid_for", "must be between 0 s and 3600 s");
      }
      request.scopes.forEach((scope, index) => {
        if (!SCOPE.test(scope)) throw invalidArgument(`scopes[${index}]`, "must be a non-empty scope token without spaces");
      });

      const context = requestContextOf(ctx);
      const integration = await deps.access.tokenIntegration(
        context.principal,
        byId ? { integrationId: request.integrationId } : { userId: request.userId, provider: request.provider, externalAccountId: request.externalAccountId },
        request.scopes,
        deps.tokenService,
      );
      const issued = await deps.tokenService.tokenFor(context, integration, minValidForMs, request.scopes);
      callOf(ctx).responseHeader.set("cache-control", "no-store");
      return responseFor(issued);
    },
  };
}

