/** The browser-binding cookie as the StartAuthorization response sets it and the callback reads it. */
import { describe, expect, it } from "vitest";
import { clearFlowCookie, formatFlowCookie, readCookie } from "../../src/transport/oauth-callback-route.js";

describe("flow binding cookie", () => {
  it("is HttpOnly, SameSite=Lax, scoped to the provider's callback path, and Secure over https", () => {
    const binding = { cookieName: "oauth_broker_flow_google", value: "b1", path: "/oauth/callback/google", maxAgeSeconds: 300 };
    expect(formatFlowCookie({ ...binding, secure: true })).toBe(
      "oauth_broker_flow_google=b1; HttpOnly; SameSite=Lax; Path=/oauth/callback/google; Max-Age=300; Secure",
    );
    expect(formatFlowCookie({ ...binding, secure: false })).toBe(
      "oauth_broker_flow_google=b1; HttpOnly; SameSite=Lax; Path=/oauth/callback/google; Max-Age=300",
    );
  });

  it("is expired by the callback on the same path", () => {
    expect(clearFlowCookie("google", "/broker/oauth/callback/google", true)).toBe(
      "oauth_broker_flow_google=; HttpOnly; SameSite=Lax; Path=/broker/oauth/callback/google; Max-Age=0; Secure",
    );
  });

  it("is read by exact name from a Cookie header", () => {
    const header = "other=1; oauth_broker_flow_google_x=no; oauth_broker_flow_google=yes; z=";
    expect(readCookie(header, "oauth_broker_flow_google")).toBe("yes");
    expect(readCookie(header, "z")).toBeUndefined();
    expect(readCookie(header, "missing")).toBeUndefined();
    expect(readCookie(undefined, "oauth_broker_flow_google")).toBeUndefined();
  });
});
