/**
 * node-vault with a bounded, injectable transport. node-vault builds the paths, the envelope
 * handling and its `ApiResponseError` (`err.response = { statusCode, body }`); the transport
 * below replaces its axios call with a `fetch` (the broker's outbound transport, src/http/; the
 * global one for the CLI) and an `AbortSignal.timeout`, so every Vault call
 * has a deadline and tests can inject failures.
 *
 * The client never holds a token: each call passes `X-Vault-Token` itself. node-vault would
 * otherwise read `VAULT_TOKEN`, `VAULT_NAMESPACE` and `VAULT_PREFIX` from the environment, which
 * only `config/` may read, and a shared client token would race with re-login.
 */
import createNodeVault from "node-vault";

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface VaultRequestOptions {
  readonly headers: Record<string, string>;
}

/** The part of node-vault the broker uses: the generic calls, which honour any mount. */
export interface VaultHttpClient {
  read(path: string, options: VaultRequestOptions): Promise<unknown>;
  write(path: string, data: unknown, options: VaultRequestOptions): Promise<unknown>;
}

/** What node-vault hands to a custom `request-promise` transport. */
interface TransportRequest {
  readonly method: string;
  readonly uri: string;
  readonly headers?: Record<string, string>;
  readonly json?: unknown;
}

interface TransportResponse {
  readonly statusCode: number;
  readonly body: unknown;
  readonly request: { readonly path: string };
}

/** Mutable fields of node-vault's client that it fills from the environment. */
interface NodeVaultInternals {
  token: string;
  namespace: string;
  pathPrefix: string;
}

export interface VaultHttpClientOptions {
  readonly address: string;
  readonly namespace: string | undefined;
  readonly timeoutMs: number;
  readonly fetchImpl?: FetchLike | undefined;
}

export function createVaultHttpClient(options: VaultHttpClientOptions): VaultHttpClient {
  const fetchImpl: FetchLike = options.fetchImpl ?? ((input, init) => fetch(input, init));

  async function transport(request: TransportRequest): Promise<TransportResponse> {
    const headers: Record<string, string> = { accept: "application/json", ...request.headers };
    const hasBody = request.json !== undefined && request.json !== null && typeof request.json === "object";
    if (hasBody) headers["content-type"] = "application/json";
    const response = await fetchImpl(request.uri, {
      method: request.method,
      headers,
      body: hasBody ? JSON.stringify(request.json) : undefined,
      signal: AbortSignal.timeout(options.timeoutMs),
      redirect: "error",
    });
    const text = await response.text();
    let body: unknown = undefined;
    if (text !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    return { statusCode: response.status, body, request: { path: new URL(request.uri).pathname } };
  }

  const client = createNodeVault({
    apiVersion: "v1",
    endpoint: options.address,
    "request-promise": { defaults: () => transport },
  });
  const internals = client as unknown as NodeVaultInternals;
  internals.token = "";
  internals.namespace = options.namespace ?? "";
  internals.pathPrefix = "";

  return {
    read: (path, requestOptions) => client.read(path, { headers: { ...requestOptions.headers } }),
    write: (path, data, requestOptions) => client.write(path, data, { headers: { ...requestOptions.headers } }),
  };
}

/** Headers for an authenticated call. */
export function tokenHeaders(token: string): VaultRequestOptions {
  return { headers: { "X-Vault-Token": token } };
}

/** Headers for an unauthenticated call (login). */
export const NO_TOKEN: VaultRequestOptions = { headers: {} };
