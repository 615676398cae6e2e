/**
 * One JSON call to a provider outside openid-client (Notion's JSON token endpoint, YouTube
 * channels, Graph /me, userinfo of plain OAuth 2.0 servers), with the same bounds and the same
 * error mapping as the OpenID calls.
 */
import { BrokerError } from "../domain/errors.js";
import type { Clock } from "../domain/ports.js";
import { classifyWireFailure, readWireFailure, toProviderError, type ProviderOperation } from "./provider-errors.js";
import type { ProviderHttp } from "./provider-http.js";

export interface JsonRequest {
  readonly method: "GET" | "POST";
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** Sent as an `application/json` body. */
  readonly json?: unknown;
  readonly signal?: AbortSignal | undefined;
}

export interface JsonCallContext {
  readonly provider: string;
  readonly operation: ProviderOperation;
  readonly clock: Clock;
}

export type JsonObject = Readonly<Record<string, unknown>>;

export async function requestJson(http: ProviderHttp, request: JsonRequest, context: JsonCallContext): Promise<JsonObject> {
  const errorContext = () => ({ provider: context.provider, operation: context.operation, now: context.clock.now() });
  let response: Response;
  let text: string;
  try {
    const headers: Record<string, string> = { accept: "application/json", ...request.headers };
    if (request.json !== undefined) headers["content-type"] = "application/json";
    response = await http.withSignal(request.signal, () =>
      http.fetch(request.url, {
        method: request.method,
        headers,
        body: request.json === undefined ? undefined : JSON.stringify(request.json),
      }),
    );
    if (response.status < 200 || response.status > 299) {
      throw classifyWireFailure(await readWireFailure(response), errorContext());
    }
    text = await response.text();
  } catch (error) {
    throw toProviderError(error, errorContext());
  }
  if (text === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new BrokerError("provider_error", `provider "${context.provider}" answered ${context.operation} with something other than a JSON object`, {
      reason: "PROVIDER_RESPONSE_INVALID",
      metadata: { provider: context.provider, operation: context.operation },
    });
  }
  return body as JsonObject;
}

/** A string member, or `undefined`. */
export function stringField(object: JsonObject | undefined, key: string): string | undefined {
  const value = object?.[key];
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** A nested object member, or `undefined`. */
export function objectField(object: JsonObject | undefined, key: string): JsonObject | undefined {
  const value = object?.[key];
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined;
}
