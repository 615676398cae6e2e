/**
 * Responses a handler answers with again and again (GetAccessToken's, one per cached token set)
 * are encoded once: the gRPC listener keeps the bytes of a message marked here for as long as the
 * message itself lives. Protobuf encoding was the largest single cost of a warm GetAccessToken
 * (bench/warm-path.ts). A marked message must not be changed after it was first sent.
 */
const encodings = new WeakMap<object, Uint8Array | null>();

export function markReusable<T extends object>(message: T): T {
  if (!encodings.has(message)) encodings.set(message, null);
  return message;
}

/** The bytes of `message`: remembered ones for a reusable message, otherwise `encode()`'s. */
export function encodeMessage(message: object, encode: () => Uint8Array): Uint8Array {
  const known = encodings.get(message);
  if (known === undefined) return encode();
  if (known !== null) return known;
  const bytes = encode();
  encodings.set(message, bytes);
  return bytes;
}
