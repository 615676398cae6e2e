/**
 * The HTTP client under every outbound request: provider calls (openid-client's `customFetch`,
 * the hand-written JSON calls) and Vault's. It keeps `fetch`'s contract for what those clients
 * ask of it, carried by undici's `request` API on one keep-alive connection pool instead of the
 * global `fetch`. Both are undici underneath; the global one runs the whole Fetch algorithm and a
 * web stream per body, which cost a proactive refresh twice the CPU of its request and answer
 * (bench/refresh-capacity.ts).
 *
 * What it keeps of `fetch`: the answer is a real `Response` (openid-client checks it is one),
 * failures reject, an `AbortSignal` cuts the request. Redirects are never followed: `manual`
 * (what every provider request asks for) returns a 3xx as it is, `error` (Vault's) rejects it.
 * What it adds: a bounded answer (a token, discovery, key-set or transit document is a few
 * kilobytes), and `accept-encoding: identity`, so no content coding has to be undone.
 */
import { Agent, request } from "undici";

/** The largest answer read; a larger one fails the request as undeliverable. */
export const MAX_RESPONSE_BYTES = 1024 * 1024;

/** Statuses whose `Response` must have no body (Fetch standard, "null body status"). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

export interface OutboundTransport {
  readonly fetch: typeof fetch;
  /** Closes the pooled connections; requests still running fail. */
  close(): Promise<void>;
}

/** An answer the transport will not read; `code` names why for the logs. */
class UnreadableResponseError extends Error {
  override readonly name = "UnreadableResponseError";
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export function createOutboundTransport(options: { readonly maxResponseBytes?: number } = {}): OutboundTransport {
  const maxBytes = options.maxResponseBytes ?? MAX_RESPONSE_BYTES;
  // undici's defaults: keep-alive honouring the server's `Keep-Alive: timeout` hint, no pipelining.
  const dispatcher = new Agent();

  const transportFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    if (input instanceof Request) throw new TypeError("outbound requests are made from a URL and options, not from a Request");
    const redirect = init.redirect ?? "manual";
    if (redirect !== "manual" && redirect !== "error") {
      throw new TypeError(`outbound requests never follow redirects (redirect: "manual" or "error"), got "${redirect}"`);
    }
    const headers: Record<string, string> = { "accept-encoding": "identity" };
    new Headers(init.headers).forEach((value, name) => (headers[name] = value));
    const answer = await request(input, {
      method: init.method ?? "GET",
      headers,
      body: requestBody(init.body, headers),
      signal: init.signal ?? undefined,
      dispatcher,
    });
    if (redirect === "error" && answer.statusCode >= 300 && answer.statusCode < 400) {
      // Read off (a redirect's body is short), so the connection stays in the pool.
      await answer.body.dump().catch(() => undefined);
      // As fetch rejects it: a TypeError whose cause says why.
      throw new TypeError("fetch failed", { cause: new UnreadableResponseError("UNEXPECTED_REDIRECT", `the server answered ${answer.statusCode}, a redirect, which this request does not follow`) });
    }
    const body = await readBounded(answer.body, maxBytes);
    const responseHeaders = new Headers();
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value === undefined) continue;
      for (const one of Array.isArray(value) ? value : [value]) responseHeaders.append(name, one);
    }
    const encoding = responseHeaders.get("content-encoding");
    if (encoding !== null && encoding.toLowerCase() !== "identity") {
      throw new UnreadableResponseError("RESPONSE_ENCODED", `the server answered with content-encoding "${encoding}" although identity was asked for`);
    }
    return new Response(NULL_BODY_STATUSES.has(answer.statusCode) ? null : body, { status: answer.statusCode, headers: responseHeaders });
  };

  return {
    fetch: transportFetch,
    close: () => dispatcher.close(),
  };
}

/** The bodies outbound requests send: forms (token, revocation) and JSON (hand-written calls, Vault). */
function requestBody(body: RequestInit["body"], headers: Record<string, string>): string | Uint8Array | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") {
    headers["content-type"] ??= "text/plain;charset=UTF-8";
    return body;
  }
  if (body instanceof URLSearchParams) {
    // As fetch does for a URLSearchParams body.
    headers["content-type"] ??= "application/x-www-form-urlencoded;charset=UTF-8";
    return body.toString();
  }
  if (body instanceof Uint8Array) return body;
  throw new TypeError("an outbound request body is a string, URLSearchParams or bytes");
}

async function readBounded(body: AsyncIterable<Uint8Array> & { destroy(error?: Error): unknown }, maxBytes: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of body) {
    length += chunk.byteLength;
    if (length > maxBytes) {
      const error = new UnreadableResponseError("RESPONSE_TOO_LARGE", `the answer exceeds ${maxBytes} bytes`);
      body.destroy(error);
      throw error;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}
