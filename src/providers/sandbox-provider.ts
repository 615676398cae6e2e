/**
 * The sandbox: a local OpenID provider (`oidc-provider`) mounted under the broker's own HTTP
 * listener, so a newcomer can run the whole authorization flow with no third-party
 * credentials. Any user name signs in; access tokens live 5 minutes and refresh tokens rotate,
 * so refreshes, rotation and re-authorization all happen within a short session. State is in
 * memory: after a restart, refreshing ends in `invalid_grant` (integration needs re-auth).
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { inspect } from "node:util";
import { exportJWK, generateKeyPair } from "jose";
import type { ProviderConfig, Secret } from "../config/types.js";
import type { Logger } from "../observability/logger.js";
import { importOidcProvider } from "./import-oidc-provider.js";
import { createMemoryAdapterFactory } from "./memory-adapter.js";
import { renderErrorPage, renderLoginPage, sendHtml } from "./sandbox-pages.js";

export interface SandboxProviderOptions {
  /** The broker's external base URL; the issuer is `${publicUrl}/sandbox`. */
  readonly publicUrl: URL;
  readonly pathPrefix?: "/sandbox" | undefined;
  /** The broker's callback for the sandbox provider (`/oauth/callback/<id>`), registered exactly. */
  readonly redirectUri: string;
  readonly logger: Logger;
  readonly accessTokenTtlSeconds?: number | undefined;
  /** Scopes the sandbox knows; others are silently not granted. */
  readonly scopes?: readonly string[] | undefined;
}

export interface SandboxProvider {
  readonly issuer: string;
  readonly clientId: string;
  /** Generated at start; never leaves the process. */
  readonly clientSecret: Secret;
  /** Serves the request when its path is under the prefix; returns false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  close(): Promise<void>;
}

export const SANDBOX_CLIENT_ID = "oauth-broker";
export const SANDBOX_SCOPES: readonly string[] = ["openid", "offline_access", "profile", "email", "sandbox.read", "sandbox.write"];
const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 300;
const USERNAME = /^[A-Za-z0-9._@+-]{1,64}$/;
const MAX_FORM_BYTES = 8 * 1024;

export async function createSandboxProvider(options: SandboxProviderOptions): Promise<SandboxProvider> {
  // Imported on demand: only the sandbox needs it.
  const { default: Provider } = await importOidcProvider();
  const prefix = options.pathPrefix ?? "/sandbox";
  const base = options.publicUrl.href.endsWith("/") ? options.publicUrl.href : `${options.publicUrl.href}/`;
  const issuer = new URL(prefix.slice(1), base).href;
  const mountPath = new URL(issuer).pathname;
  const logger = options.logger.child({ component: "sandbox-provider" });
  const secretValue = randomBytes(32).toString("base64url");
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const signingKey = { ...(await exportJWK(privateKey)), alg: "RS256", use: "sig", kid: randomUUID() };
  const ttl = options.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS;
  const scopes = [...new Set(["openid", "offline_access", ...(options.scopes ?? SANDBOX_SCOPES)])];

  const provider = new Provider(issuer, {
    adapter: createMemoryAdapterFactory(),
    clients: [
      {
        client_id: SANDBOX_CLIENT_ID,
        client_secret: secretValue,
        client_name: "oauth-broker",
        redirect_uris: [options.redirectUri],
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true, allowedPolicy: ownTokensOnly },
      userinfo: { enabled: true },
    },
    pkce: { required: () => true },
    ttl: {
      AccessToken: ttl,
      AuthorizationCode: 60,
      IdToken: ttl,
      RefreshToken: 14 * 24 * 60 * 60,
      Grant: 14 * 24 * 60 * 60,
      Interaction: 10 * 60,
      Session: 24 * 60 * 60,
    },
    rotateRefreshToken: true,
    // Like most providers, a refresh token for every code grant of a client allowed to refresh.
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed("refresh_token"),
    expiresWithSession: () => false,
    conformIdTokenClaims: false,
    scopes,
    claims: { openid: ["sub"], profile: ["name", "preferred_username"], email: ["email", "email_verified"] },
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({
        sub,
        name: sub,
        preferred_username: sub,
        email: `${sub}@sandbox.invalid`,
        email_verified: false,
      }),
    }),
    interactions: { url: (_ctx, interaction) => `${mountPath}/interaction/${interaction.uid}` },
    clientBasedCORS: () => false,
    renderError: (ctx, out) => {
      ctx.type = "html";
      const shown: Record<string, string> = {};
      for (const key of ["error", "error_description"]) if (out[key] !== undefined) shown[key] = String(out[key]);
      ctx.body = renderErrorPage("Sandbox provider error", shown);
    },
  });
  // Behind a TLS-terminating proxy the request arrives over HTTP: trust X-Forwarded-Proto/Host
  // only then, so the endpoints the sandbox advertises keep the public https scheme.
  provider.proxy = options.publicUrl.protocol === "https:";
  provider.on("server_error", (_ctx: unknown, error: unknown) => {
    logger.error({ error: error instanceof Error ? error.message : "unknown" }, "sandbox provider failed a request");
  });
  const callback = provider.callback();

  async function interaction(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      sendHtml(res, 400, renderErrorPage("Sign-in expired", { detail: "Start again from the application." }));
      return;
    }
    const clientId = typeof details.params["client_id"] === "string" ? details.params["client_id"] : "";
    const requested = typeof details.params["scope"] === "string" ? details.params["scope"].split(" ").filter(Boolean) : [];
    const page = { action: `${mountPath}/interaction/${details.uid}`, clientName: clientId, scopes: requested };
    if (req.method === "GET") {
      sendHtml(res, 200, renderLoginPage({ ...page, username: details.session?.accountId }));
      return;
    }
    if (req.method !== "POST") {
      res.statusCode = 405;
      res.setHeader("allow", "GET, POST");
      res.end();
      return;
    }
    const form = await readForm(req);
    if (form.get("decision") === "deny") {
      await provider.interactionFinished(
        req,
        res,
        { error: "access_denied", error_description: "the user denied the request" },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    const username = (form.get("username") ?? "").trim();
    if (!USERNAME.test(username)) {
      sendHtml(res, 400, renderLoginPage({ ...page, username, error: "Use 1 to 64 letters, digits or . _ @ + -" }));
      return;
    }
    // One click signs in and grants every requested scope the sandbox knows.
    const grant = new provider.Grant({ accountId: username, clientId });
    grant.addOIDCScope(requested.filter((s) => scopes.includes(s)).join(" "));
    const grantId = await grant.save();
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: username }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
  }

  return {
    issuer,
    clientId: SANDBOX_CLIENT_ID,
    clientSecret: secret(secretValue),
    handle(req, res) {
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      if (path !== mountPath && !path.startsWith(`${mountPath}/`)) return false;
      const rest = (req.url ?? "/").slice(mountPath.length);
      const done = (error: unknown): void => {
        logger.error({ error: error instanceof Error ? error.message : "unknown" }, "sandbox request failed");
        if (!res.headersSent) sendHtml(res, 500, renderErrorPage("Sandbox provider error", { detail: "internal error" }));
        else res.end();
      };
      if (/^\/interaction\/[A-Za-z0-9_-]+$/.test(path.slice(mountPath.length))) {
        interaction(req, res).catch(done);
        return true;
      }
      // oidc-provider derives its mount path from `originalUrl` minus `url` (as under Express).
      Object.assign(req, { originalUrl: req.url });
      req.url = rest === "" || rest.startsWith("?") ? `/${rest}` : rest;
      callback(req, res).catch(done);
      return true;
    },
    async close() {
      // In-memory state only: nothing to release.
    },
  };
}

/**
 * The broker's provider entry for the sandbox: the generic OIDC client pointed at the sandbox
 * issuer with its generated credentials.
 */
export function sandboxProviderConfig(base: ProviderConfig, sandbox: Pick<SandboxProvider, "issuer" | "clientId" | "clientSecret">): ProviderConfig {
  return {
    ...base,
    kind: "sandbox",
    clientId: sandbox.clientId,
    clientSecret: sandbox.clientSecret,
    clientAuthMethod: "client_secret_basic",
    pkce: true,
    endpoints: { issuer: sandbox.issuer },
  };
}

/** RFC 7009 §2.1: a client may revoke only the tokens issued to it. */
function ownTokensOnly(_ctx: unknown, client: { clientId: string }, token: { clientId: string }): boolean {
  return token.clientId === client.clientId;
}

function secret(value: string): Secret {
  const redacted = "[redacted]";
  return {
    reveal: () => value,
    toString: () => redacted,
    toJSON: () => redacted,
    [inspect.custom]: () => redacted,
  } as Secret;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    if (size > MAX_FORM_BYTES) break;
    chunks.push(buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}
