/**
 * AuthorizationService: proto ⇄ domain mapping for StartAuthorization and CompleteAuthorization.
 * The flow and its checks live in `domain/authorization-service.ts`. StartAuthorization also
 * sets the browser-binding cookie when the caller is a signed-in user's browser.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { flowCookieName, type AuthorizationService as Flow } from "../../domain/authorization-service.js";
import type { AuthorizationService } from "../../gen/oauthbroker/v1/authorization_service_pb.js";
import { requestContextOf } from "../service-binding.js";
import { formatFlowCookie, readCookie } from "../oauth-callback-route.js";
import { toProtoIntegration } from "./integration-mapping.js";

export function createAuthorizationServiceHandlers(deps: {
  service: Pick<Flow, "start" | "complete">;
}): ServiceImpl<typeof AuthorizationService> {
  return {
    async startAuthorization(request, ctx) {
      const result = await deps.service.start(requestContextOf(ctx), {
        provider: request.provider,
        scopes: request.scopes,
        returnTo: request.returnTo,
        userId: request.userId,
      });
      // The response carries the state inside the URL: keep it out of every cache.
      ctx.responseHeader.set("cache-control", "no-store");
      if (result.browserBinding !== undefined) ctx.responseHeader.append("set-cookie", formatFlowCookie(result.browserBinding));
      return {
        authorizationUrl: result.authorizationUrl,
        expireTime: timestampFromDate(result.expiresAt),
        sessionId: result.sessionId,
      };
    },

    async completeAuthorization(request, ctx) {
      const result = await deps.service.complete(requestContextOf(ctx), {
        provider: request.provider,
        state: request.state,
        code: request.code,
        iss: request.iss,
        error: request.error,
        errorDescription: request.errorDescription,
        // An app that proxies the callback may forward the browser's cookie: the binding then holds too.
        binding: readCookie(ctx.requestHeader.get("cookie") ?? undefined, flowCookieName(request.provider)),
      });
      ctx.responseHeader.set("cache-control", "no-store");
      return { integration: toProtoIntegration(result.integration), returnTo: result.returnTo };
    },
  };
}
