/**
 * A request a listener refused before any handler could see it: too large, or bytes that are
 * not the method's message. The refusal travels into the interceptor chain instead of being
 * answered by the listener, so it is authenticated first (UNAUTHENTICATED wins over anything
 * about the body), logged, counted and audited like every other failed call.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { BrokerError } from "../domain/errors.js";

export class RequestRefusal {
  constructor(readonly error: BrokerError) {}
}

/** RESOURCE_EXHAUSTED naming the limit: the body as sent, or once decompressed, is over it. */
export function requestTooLarge(maxRequestBytes: number): BrokerError {
  return new BrokerError(
    "request_too_large",
    `the request is larger than ${maxRequestBytes} bytes (limits.maxRequestBytes), as sent or once decompressed; send a smaller request`,
    { reason: "REQUEST_TOO_LARGE", metadata: { max_request_bytes: String(maxRequestBytes) } },
  );
}

/**
 * INVALID_ARGUMENT for bytes that do not decode. The message is generic on purpose: what the
 * parser said ("premature EOF") describes the broker's parser, not what the caller should fix.
 */
export function malformedRequest(typeName: string): BrokerError {
  return new BrokerError("invalid_argument", `the request is not a valid ${typeName} message`, { reason: "MALFORMED_REQUEST" });
}

/**
 * The request messages of a client or bidi stream, with connect-node's decode failure ("parse
 * binary: premature EOF", an INTERNAL ConnectError raised while iterating) turned into the same
 * INVALID_ARGUMENT a unary call gets: undecodable bytes are the caller's fault.
 */
export async function* decodedRequests<T>(requests: AsyncIterable<T>, typeName: string): AsyncGenerator<T> {
  try {
    for await (const request of requests) yield request;
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.Internal && /^parse (binary|json)/.test(error.rawMessage)) {
      throw malformedRequest(typeName);
    }
    throw error;
  }
}
