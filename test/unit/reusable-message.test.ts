import { describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GetAccessTokenResponseSchema } from "../../src/gen/oauthbroker/v1/token_service_pb.js";
import { encodeMessage, markReusable } from "../../src/transport/reusable-message.js";

describe("reusable messages", () => {
  it("encodes a marked message once and answers later sends with the same bytes", () => {
    const message = markReusable(create(GetAccessTokenResponseSchema, { accessToken: "token-a", tokenType: "Bearer" }));
    let encodings = 0;
    const encode = () => {
      encodings += 1;
      return toBinary(GetAccessTokenResponseSchema, message);
    };
    const first = encodeMessage(message, encode);
    const second = encodeMessage(message, encode);
    expect(encodings).toBe(1);
    expect(second).toBe(first);
    expect(fromBinary(GetAccessTokenResponseSchema, second).accessToken).toBe("token-a");
    // Marking again keeps the bytes already made.
    markReusable(message);
    expect(encodeMessage(message, encode)).toBe(first);
    expect(encodings).toBe(1);
  });

  it("encodes every send of an unmarked message anew", () => {
    const message = create(GetAccessTokenResponseSchema, { accessToken: "token-b" });
    let encodings = 0;
    const encode = () => {
      encodings += 1;
      return toBinary(GetAccessTokenResponseSchema, message);
    };
    encodeMessage(message, encode);
    message.accessToken = "token-c";
    const again = encodeMessage(message, encode);
    expect(encodings).toBe(2);
    expect(fromBinary(GetAccessTokenResponseSchema, again).accessToken).toBe("token-c");
  });
});
