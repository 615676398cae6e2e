/** Client authentication per provider (RFC 6749 §2.3.1 versus raw Basic). */
import { describe, expect, it } from "vitest";
import { ClientSecretBasic } from "openid-client";
import { basicAuthorization, bodyCredentials, clientCredentials, openIdClientAuth } from "../../src/providers/client-auth.js";
import { testProviderConfig } from "../support/peers/provider-config.js";

const decode = (header: string | undefined) => Buffer.from((header ?? "").replace(/^Basic /, ""), "base64").toString("utf8");

describe("client authentication", () => {
  const id = "client id:1";
  const secret = "s3cret+/=:%~";

  it("form-encodes id and secret for client_secret_basic, byte for byte like openid-client", () => {
    const credentials = { clientId: id, clientSecret: secret, method: "client_secret_basic" as const };
    expect(decode(basicAuthorization(credentials))).toBe("client+id%3A1:s3cret%2B%2F%3D%3A%25%7E");
    const headers = new Headers();
    ClientSecretBasic(secret)({ issuer: "https://i" }, { client_id: id }, new URLSearchParams(), headers);
    expect(basicAuthorization(credentials)).toBe(headers.get("authorization"));
  });

  it("sends the raw values for client_secret_basic_raw (Notion)", () => {
    const credentials = { clientId: id, clientSecret: secret, method: "client_secret_basic_raw" as const };
    expect(decode(basicAuthorization(credentials))).toBe(`${id}:${secret}`);
    const headers = new Headers();
    openIdClientAuth(credentials)({ issuer: "https://i" }, { client_id: id }, new URLSearchParams(), headers);
    expect(decode(headers.get("authorization") ?? undefined)).toBe(`${id}:${secret}`);
  });

  it("puts credentials in the body for client_secret_post and only the id for none", () => {
    expect(bodyCredentials({ clientId: id, clientSecret: secret, method: "client_secret_post" })).toEqual({ client_id: id, client_secret: secret });
    expect(bodyCredentials({ clientId: id, clientSecret: undefined, method: "none" })).toEqual({ client_id: id });
    expect(basicAuthorization({ clientId: id, clientSecret: secret, method: "client_secret_post" })).toBeUndefined();
  });

  it("refuses configurations without the credentials their method needs", () => {
    expect(() => clientCredentials(testProviderConfig({ id: "x", kind: "oidc", clientId: undefined }))).toThrow(
      expect.objectContaining({ code: "provider_misconfigured", reason: "CLIENT_ID_MISSING" }),
    );
    expect(() => clientCredentials(testProviderConfig({ id: "x", kind: "oidc" }))).toThrow(
      expect.objectContaining({ code: "provider_misconfigured", reason: "CLIENT_SECRET_MISSING" }),
    );
    expect(clientCredentials(testProviderConfig({ id: "x", kind: "oidc", clientAuthMethod: "none" })).clientSecret).toBeUndefined();
  });
});
