/**
 * Client authentication at the token and revocation endpoints, per provider
 * (oauth-client-security.md §9). `client_secret_basic` follows RFC 6749 §2.3.1 (id and secret
 * form-encoded before Basic); `client_secret_basic_raw` sends them as they are, which Notion
 * expects; a secret containing reserved characters only works with the right one.
 */
import { ClientSecretBasic, ClientSecretPost, None, type ClientAuth } from "openid-client";
import type { ClientAuthMethod, ProviderConfig } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";

export interface ClientCredentials {
  readonly clientId: string;
  readonly clientSecret: string | undefined;
  readonly method: ClientAuthMethod;
}

/** Validates that the configuration holds what its auth method needs. */
export function clientCredentials(config: ProviderConfig): ClientCredentials {
  if (config.clientId === undefined || config.clientId === "") {
    throw new BrokerError("provider_misconfigured", `provider "${config.id}" has no client id configured`, {
      reason: "CLIENT_ID_MISSING",
      metadata: { provider: config.id },
    });
  }
  const secret = config.clientSecret?.reveal();
  if (config.clientAuthMethod !== "none" && (secret === undefined || secret === "")) {
    throw new BrokerError(
      "provider_misconfigured",
      `provider "${config.id}" uses ${config.clientAuthMethod} but has no client secret configured`,
      { reason: "CLIENT_SECRET_MISSING", metadata: { provider: config.id } },
    );
  }
  return { clientId: config.clientId, clientSecret: secret, method: config.clientAuthMethod };
}

/** The `Authorization` header value for the Basic methods. */
export function basicAuthorization(credentials: ClientCredentials): string | undefined {
  const secret = credentials.clientSecret ?? "";
  switch (credentials.method) {
    case "client_secret_basic":
      return `Basic ${Buffer.from(`${formEncode(credentials.clientId)}:${formEncode(secret)}`).toString("base64")}`;
    case "client_secret_basic_raw":
      return `Basic ${Buffer.from(`${credentials.clientId}:${secret}`).toString("base64")}`;
    case "client_secret_post":
    case "none":
      return undefined;
  }
}

/** Body members for the methods that send credentials in the request body. */
export function bodyCredentials(credentials: ClientCredentials): Record<string, string> {
  switch (credentials.method) {
    case "client_secret_post":
      return { client_id: credentials.clientId, client_secret: credentials.clientSecret ?? "" };
    case "none":
      return { client_id: credentials.clientId };
    case "client_secret_basic":
    case "client_secret_basic_raw":
      return {};
  }
}

/** The same methods as openid-client `ClientAuth` functions. */
export function openIdClientAuth(credentials: ClientCredentials): ClientAuth {
  const secret = credentials.clientSecret ?? "";
  switch (credentials.method) {
    case "client_secret_basic":
      return ClientSecretBasic(secret);
    case "client_secret_post":
      return ClientSecretPost(secret);
    case "none":
      return None();
    case "client_secret_basic_raw": {
      const header = basicAuthorization(credentials) ?? "";
      return (_as, _client, _body, headers) => {
        headers.set("authorization", header);
      };
    }
  }
}

/** RFC 6749 Appendix B: application/x-www-form-urlencoded, byte for byte as ClientSecretBasic does it. */
function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/[-_.!~*'()]|%20/g, (c) =>
    c === "%20" ? "+" : `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}
