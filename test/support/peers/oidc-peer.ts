/**
 * `oidc-provider` playing a Google-like or a Microsoft-like authorization server on 127.0.0.1,
 * with the wire details the broker has to cope with (providers.md):
 * - google: refresh token for every code grant (access_type=offline), never rotated and not
 *   returned on refresh, RFC 7009 revocation, `invalid_grant` "Token has been expired or revoked."
 * - microsoft: refresh tokens only with `offline_access`, rotated on every use (replaying a
 *   rotated one revokes the grant), no revocation endpoint, AADSTS codes in `invalid_grant`,
 *   `oid` / `tid` claims.
 * Also: a consent page that can grant fewer scopes than asked, fault injection on the token
 * and revocation endpoints (including holding requests until released, to catch a client in
 * the middle of a call), request counters, and YouTube channels / Graph /me stubs.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair } from "jose";
import { createRefreshAnswerTap } from "./refresh-answer-tap.js";
import Provider from "oidc-provider";
import { createMemoryAdapterFactory } from "../../../src/providers/memory-adapter.js";
import { driveConsent, type ConsentChoices } from "./browser.js";

export interface OidcPeerClient {
  readonly client_id: string;
  readonly client_secret?: string;
  readonly redirect_uris: string[];
  readonly token_endpoint_auth_method: "client_secret_basic" | "client_secret_post" | "none";
}

export interface OidcPeerOptions {
  readonly flavor: "google" | "microsoft";
  readonly clients: readonly OidcPeerClient[];
  readonly accessTokenTtlSeconds?: number;
  /** Default: false for google, true for microsoft. */
  readonly rotateRefreshTokens?: boolean;
  /** Extra scopes the server knows (besides openid, offline_access, profile, email and the defaults). */
  readonly scopes?: readonly string[];
  /**
   * microsoft only: name Graph permissions in token responses as Microsoft does, lower-cased
   * under their resource (`User.Read` granted as `https://graph.microsoft.com/user.read`).
   * Default: as requested.
   */
  readonly graphScopeSpelling?: boolean;
  /** False: `offline_access` is neither known nor advertised, so no refresh token is ever issued. */
  readonly offlineAccess?: boolean;
  /**
   * The microsoft flavor adds `prompt=consent` to requests asking for `offline_access`, as
   * Microsoft needs none; false: like a plain OpenID provider, the client must send it.
   */
  readonly impliedConsentPrompt?: boolean;
  /** A rotated-out refresh token presented again this soon gets the same answer (refresh-answer-tap.ts). */
  readonly refreshReuseWindowMs?: number;
  /** Default true; false also serves clients that send no PKCE challenge (as many providers do). */
  readonly pkceRequired?: boolean;
}

const OPENID_SCOPES = new Set(["openid", "profile", "email", "offline_access"]);

/**
 * `hold`: the request waits, unanswered, until `releaseHeldRequests()` (then it is served
 * normally) or until its client goes away (then the provider never sees it: nothing rotates).
 */
export type EndpointFault = "none" | "503" | "429" | "slow" | "hold";

export interface OidcPeer {
  readonly issuer: string;
  /** Base URL of the API stubs (YouTube channels, Graph /me). */
  readonly apiBase: string;
  /** The tenant id the microsoft flavor puts in `tid`. */
  readonly tenantId: string;
  tokenRequests(): number;
  revocationRequests(): number;
  setTokenEndpointFault(fault: EndpointFault): void;
  setRevocationEndpointFault(fault: EndpointFault): void;
  /** Requests currently held by the `hold` fault. */
  heldRequests(): number;
  /** The `429` fault's Retry-After in seconds (default `RETRY_AFTER_SECONDS`); undefined sends none. */
  setRetryAfter(seconds: number | undefined): void;
  /** Refreshes are processed (rotation included) but their answers withheld until the client goes away. */
  setWithholdAnswers(withhold: boolean): void;
  withheldAnswers(): number;
  /** Replays answered inside `refreshReuseWindowMs`. */
  forgivenReuses(): number;
  /** Lets every held request through to the provider. */
  releaseHeldRequests(): void;
  setYouTubeQuotaExceeded(exceeded: boolean): void;
  /** The user removes the app's access at the provider: every grant of theirs dies. */
  revokeGrantsFor(username: string): Promise<void>;
  /** Expected ids, as the provider derives them from a user name. */
  accountIds(username: string): { sub: string; oid: string; channelId: string };
  driveConsent(authorizationUrl: string | URL, choices: ConsentChoices): Promise<URL>;
  close(): Promise<void>;
}

export const RETRY_AFTER_SECONDS = 7;
export const SLOW_DELAY_MS = 5_000;
export const PEER_DEFAULT_SCOPES = [
  "calendar.read",
  "calendar.write",
  "https://www.googleapis.com/auth/youtube",
  "https://www.googleapis.com/auth/youtube.readonly",
  "https://www.googleapis.com/auth/youtube.upload",
  "User.Read",
  "Mail.Read",
];

export async function startOidcPeer(options: OidcPeerOptions): Promise<OidcPeer> {
  const flavor = options.flavor;
  const rotate = options.rotateRefreshTokens ?? flavor === "microsoft";
  const tenantId = randomUUID();
  let tokenRequests = 0;
  let revocationRequests = 0;
  let tokenFault: EndpointFault = "none";
  let revocationFault: EndpointFault = "none";
  let quotaExceeded = false;
  let retryAfter: number | undefined = RETRY_AFTER_SECONDS;
  const tap = createRefreshAnswerTap({ reuseWindowMs: options.refreshReuseWindowMs });
  const grantsByUser = new Map<string, string[]>();
  const usersBySub = new Map<string, string>();
  const pending = new Set<NodeJS.Timeout>();
  const held = new Set<(outcome: "released" | "gone") => void>();

  const digest = (value: string): Buffer => createHash("sha256").update(`${flavor}:${value}`).digest();
  const accountIds = (username: string) => {
    const hash = digest(username);
    const hex = hash.toString("hex");
    return {
      sub: flavor === "google" ? BigInt(`0x${hex.slice(0, 16)}`).toString().padStart(21, "1") : hash.toString("base64url").slice(0, 43),
      oid: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`,
      channelId: `UC${hash.toString("base64url").slice(0, 22)}`,
    };
  };

  let handler: (req: IncomingMessage, res: ServerResponse) => Promise<void> = async (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => {
    handler(req, res).catch(() => {
      if (!res.headersSent) res.statusCode = 500;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const provider = new Provider(issuer, {
    adapter: createMemoryAdapterFactory(),
    clients: options.clients.map((client) => ({
      ...client,
      redirect_uris: [...client.redirect_uris],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
    })),
    jwks: { keys: [{ ...(await exportJWK(privateKey)), alg: "RS256", use: "sig", kid: randomUUID() }] },
    cookies: { keys: [randomBytes(16).toString("hex")] },
    features: {
      devInteractions: { enabled: false },
      revocation: {
        enabled: flavor === "google",
        allowedPolicy: (_ctx: unknown, client: { clientId: string }, token: { clientId: string }) => token.clientId === client.clientId,
      },
      userinfo: { enabled: true },
    },
    pkce: { required: () => options.pkceRequired ?? true },
    ttl: {
      AccessToken: options.accessTokenTtlSeconds ?? 3599,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 24 * 60 * 60,
      Grant: 24 * 60 * 60,
      Interaction: 600,
      Session: 3600,
    },
    rotateRefreshToken: rotate,
    issueRefreshToken:
      flavor === "google"
        ? (_ctx, client) => client.grantTypeAllowed("refresh_token")
        : (_ctx, client, code) => client.grantTypeAllowed("refresh_token") && hasScope(code, "offline_access"),
    expiresWithSession: () => false,
    conformIdTokenClaims: false,
    extraParams: ["access_type", "include_granted_scopes"],
    scopes: [...new Set(["openid", "offline_access", "profile", "email", ...PEER_DEFAULT_SCOPES, ...(options.scopes ?? [])])].filter(
      (scope) => scope !== "offline_access" || options.offlineAccess !== false,
    ),
    claims: {
      openid: ["sub"],
      profile: flavor === "microsoft" ? ["name", "preferred_username", "oid", "tid"] : ["name"],
      email: ["email", "email_verified"],
    },
    findAccount: async (_ctx, sub) => {
      const username = usersBySub.get(sub);
      if (username === undefined) return undefined;
      const ids = accountIds(username);
      return {
        accountId: sub,
        claims: async () =>
          flavor === "google"
            ? { sub: ids.sub, name: username, email: `${username}@example.test`, email_verified: true }
            : {
                sub: ids.sub,
                oid: ids.oid,
                tid: tenantId,
                name: username,
                preferred_username: `${username}@contoso.test`,
                email: `${username}@contoso.test`,
              },
      };
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    clientBasedCORS: () => false,
    renderError: (ctx, out) => {
      ctx.type = "text/plain";
      ctx.body = `error: ${out["error"] ?? ""} ${out["error_description"] ?? ""}`;
    },
  });

  // Provider wire dialects for token errors and refresh answers.
  provider.use(async (ctx, next) => {
    // Microsoft issues a refresh token whenever `offline_access` is asked for; oidc-provider
    // keeps that scope only with prompt=consent (OIDC Core §11), so the peer adds it.
    if (flavor === "microsoft" && options.impliedConsentPrompt !== false && ctx.path === "/auth" && ctx.query["prompt"] === undefined) {
      const scope = ctx.query["scope"];
      if (typeof scope === "string" && scope.split(" ").includes("offline_access")) ctx.query = { ...ctx.query, prompt: "consent" };
    }
    await next();
    if (ctx.path !== "/token" || typeof ctx.body !== "object" || ctx.body === null) return;
    const body = ctx.body as Record<string, unknown>;
    if (ctx.status === 400 && body["error"] === "invalid_grant") {
      ctx.body =
        flavor === "google"
          ? { error: "invalid_grant", error_description: "Token has been expired or revoked." }
          : {
              error: "invalid_grant",
              error_description:
                "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity. Trace ID: 0f1e Correlation ID: 9a8b",
              error_codes: [70008],
              timestamp: new Date().toISOString(),
            };
    }
    if (ctx.status === 200 && flavor === "microsoft" && options.graphScopeSpelling === true && typeof body["scope"] === "string") {
      body["scope"] = body["scope"]
        .split(" ")
        .map((scope) => (OPENID_SCOPES.has(scope) ? scope : `https://graph.microsoft.com/${scope.toLowerCase()}`))
        .join(" ");
    }
    if (ctx.status === 200 && flavor === "google" && ctx.oidc?.params?.["grant_type"] === "refresh_token") {
      const { refresh_token: _dropped, ...rest } = body;
      ctx.body = rest;
    }
  });

  const callback = provider.callback();

  async function userFromBearer(req: IncomingMessage): Promise<string | undefined> {
    const value = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    if (value === undefined) return undefined;
    const token = await provider.AccessToken.find(value);
    if (token === undefined || token.isExpired) return undefined;
    return usersBySub.get(token.accountId);
  }

  function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  }

  async function applyFault(fault: EndpointFault, res: ServerResponse): Promise<boolean> {
    switch (fault) {
      case "none":
        return false;
      case "503":
        res.writeHead(503, { "content-type": "text/html", "retry-after": String(RETRY_AFTER_SECONDS) });
        res.end("<html><body>Service Unavailable</body></html>");
        return true;
      case "429":
        sendJson(res, 429, { error: "rate_limit_exceeded", error_description: "Rate limit exceeded" }, retryAfter === undefined ? {} : { "retry-after": String(retryAfter) });
        return true;
      case "slow":
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            pending.delete(timer);
            resolve();
          }, SLOW_DELAY_MS);
          pending.add(timer);
        });
        return false;
      case "hold": {
        const outcome = await new Promise<"released" | "gone">((resolve) => {
          const settle = (value: "released" | "gone") => {
            held.delete(settle);
            res.off("close", onClose);
            resolve(value);
          };
          const onClose = () => settle("gone");
          held.add(settle);
          res.once("close", onClose);
        });
        if (outcome === "gone") res.destroy();
        return outcome === "gone";
      }
    }
  }

  async function interaction(req: IncomingMessage, res: ServerResponse, uid: string): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (req.method === "GET") {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<!doctype html><title>Sign in</title><form method="post" action="/interaction/${uid}">
<input name="username"><input name="grant_scope"><button name="decision" value="allow">Allow</button></form>`);
      return;
    }
    const form = new URLSearchParams(await readBody(req));
    if (form.get("decision") === "deny") {
      await provider.interactionFinished(req, res, { error: "access_denied", error_description: "The user denied access" }, { mergeWithLastSubmission: false });
      return;
    }
    const username = form.get("username") ?? "anonymous";
    const accountId = accountIds(username).sub;
    usersBySub.set(accountId, username);
    const requested = String(details.params["scope"] ?? "").split(" ").filter(Boolean);
    const chosen = form.get("grant_scope");
    const granted = chosen === null || chosen === "" ? requested : requested.filter((s) => s === "openid" || chosen.split(" ").includes(s));
    const grant = new provider.Grant({ accountId, clientId: String(details.params["client_id"]) });
    grant.addOIDCScope(granted.join(" "));
    const rejected = requested.filter((s) => !granted.includes(s));
    if (rejected.length > 0) grant.rejectOIDCScope(rejected.join(" "));
    const grantId = await grant.save();
    grantsByUser.set(username, [...(grantsByUser.get(username) ?? []), grantId]);
    await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
  }

  handler = async (req, res) => {
    const url = new URL(req.url ?? "/", issuer);
    if (url.pathname === "/token" && req.method === "POST") {
      tokenRequests += 1;
      if (await applyFault(tokenFault, res)) return;
      if (await tap.intercept(req, res)) return;
    }
    if (url.pathname === "/token/revocation" && req.method === "POST") {
      revocationRequests += 1;
      if (await applyFault(revocationFault, res)) return;
    }
    const interactionUid = /^\/interaction\/([\w-]+)$/.exec(url.pathname)?.[1];
    if (interactionUid !== undefined) return interaction(req, res, interactionUid);
    if (url.pathname === "/youtube/v3/channels") {
      if (quotaExceeded) {
        const message = "The request cannot be completed because you have exceeded your quota.";
        return sendJson(res, 403, { error: { code: 403, message, errors: [{ message, domain: "youtube.quota", reason: "quotaExceeded" }] } });
      }
      const username = await userFromBearer(req);
      if (username === undefined) return sendJson(res, 401, { error: { code: 401, message: "Invalid Credentials", status: "UNAUTHENTICATED" } });
      const channelId = accountIds(username).channelId;
      return sendJson(res, 200, {
        kind: "youtube#channelListResponse",
        items: [{ kind: "youtube#channel", id: channelId, snippet: { title: `${username} videos`, customUrl: `@${username}` } }],
      });
    }
    if (url.pathname === "/v1.0/me") {
      const username = await userFromBearer(req);
      if (username === undefined) return sendJson(res, 401, { error: { code: "InvalidAuthenticationToken", message: "Access token is empty." } });
      return sendJson(res, 200, { id: accountIds(username).oid, userPrincipalName: `${username}@contoso.test`, displayName: username });
    }
    await callback(req, res);
  };

  return {
    issuer,
    apiBase: issuer,
    tenantId,
    tokenRequests: () => tokenRequests,
    revocationRequests: () => revocationRequests,
    setTokenEndpointFault: (fault) => {
      tokenFault = fault;
    },
    setRevocationEndpointFault: (fault) => {
      revocationFault = fault;
    },
    heldRequests: () => held.size,
    setRetryAfter: (seconds) => {
      retryAfter = seconds;
    },
    setWithholdAnswers: (withhold) => tap.setWithholdAnswers(withhold),
    withheldAnswers: () => tap.withheldAnswers(),
    forgivenReuses: () => tap.forgivenReuses(),
    releaseHeldRequests: () => {
      for (const settle of [...held]) settle("released");
    },
    setYouTubeQuotaExceeded: (exceeded) => {
      quotaExceeded = exceeded;
    },
    async revokeGrantsFor(username) {
      for (const grantId of grantsByUser.get(username) ?? []) {
        const grant = await provider.Grant.find(grantId);
        await grant?.destroy();
      }
      grantsByUser.delete(username);
    },
    accountIds,
    driveConsent: (authorizationUrl, choices) => driveConsent(authorizationUrl, choices),
    async close() {
      for (const timer of pending) clearTimeout(timer);
      pending.clear();
      for (const settle of [...held]) settle("gone");
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function hasScope(code: unknown, scope: string): boolean {
  const scopes = (code as { scopes?: Set<string> }).scopes;
  return scopes instanceof Set && scopes.has(scope);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString("utf8");
}
