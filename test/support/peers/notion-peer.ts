/**
 * A Notion look-alike following Notion's documented OAuth wire format on 127.0.0.1:
 * `GET /v1/oauth/authorize` (redirects straight back; the user is picked with `user=`),
 * `POST /v1/oauth/token` (JSON body, raw-Basic client auth, `Notion-Version` required, no
 * `expires_in`, refresh tokens rotated on every use), `POST /v1/oauth/revoke`, and
 * `GET /v1/users/me`. Errors are Notion error objects; 429 `rate_limited` carries Retry-After
 * and 529 is `service_overload`. Counters and fault injection as in the OIDC peer.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { driveConsent, type ConsentChoices } from "./browser.js";

export interface NotionPeerClient {
  readonly client_id: string;
  readonly client_secret: string;
  readonly redirect_uris: string[];
}

export type NotionFault = "none" | "429" | "503" | "529" | "slow";

export interface NotionInstallation {
  readonly username: string;
  readonly clientId: string;
  readonly botId: string;
  readonly workspaceId: string;
  readonly workspaceName: string;
  readonly ownerUserId: string;
}

export interface NotionPeer {
  /** The API base (`endpoints.api`). */
  readonly apiBase: string;
  tokenRequests(): number;
  revocationRequests(): number;
  setTokenEndpointFault(fault: NotionFault): void;
  setRevocationEndpointFault(fault: NotionFault): void;
  /** The user removes the integration in Notion: its tokens stop working. */
  revokeUser(username: string): void;
  installation(username: string, clientId: string): NotionInstallation;
  /** Whether an access token is currently valid at the peer. */
  isAccessTokenValid(token: string): boolean;
  driveConsent(authorizationUrl: string | URL, choices: ConsentChoices): Promise<URL>;
  close(): Promise<void>;
}

export const NOTION_RETRY_AFTER_SECONDS = 3;
export const NOTION_SLOW_DELAY_MS = 5_000;

interface CodeRecord {
  readonly installation: NotionInstallation;
  readonly redirectUri: string;
  used: boolean;
}

export async function startNotionPeer(options: { clients: readonly NotionPeerClient[] }): Promise<NotionPeer> {
  let tokenRequests = 0;
  let revocationRequests = 0;
  let tokenFault: NotionFault = "none";
  let revocationFault: NotionFault = "none";
  const codes = new Map<string, CodeRecord>();
  const accessTokens = new Map<string, NotionInstallation>();
  const refreshTokens = new Map<string, { installation: NotionInstallation; accessToken: string }>();
  const pending = new Set<NodeJS.Timeout>();

  const uuid = (seed: string): string => {
    const hex = createHash("sha256").update(seed).digest("hex");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
  };
  const installation = (username: string, clientId: string): NotionInstallation => ({
    username,
    clientId,
    botId: uuid(`bot:${username}:${clientId}`),
    workspaceId: uuid(`workspace:${username}`),
    workspaceName: `${username}'s Notion`,
    ownerUserId: uuid(`user:${username}`),
  });

  const server = createServer((req, res) => {
    route(req, res).catch(() => {
      if (!res.headersSent) res.statusCode = 500;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const apiBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  function notionError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify({ object: "error", status, code, message, request_id: randomBytes(8).toString("hex") }));
  }

  function sendJson(res: ServerResponse, body: unknown): void {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  }

  async function applyFault(fault: NotionFault, res: ServerResponse): Promise<boolean> {
    switch (fault) {
      case "none":
        return false;
      case "429":
        notionError(res, 429, "rate_limited", "You have been rate limited. Please try again in a few minutes.", {
          "retry-after": String(NOTION_RETRY_AFTER_SECONDS),
        });
        return true;
      case "503":
        notionError(res, 503, "service_unavailable", "Notion is unavailable, please try again later.");
        return true;
      case "529":
        notionError(res, 529, "service_overload", "Notion is overloaded, please try again later.");
        return true;
      case "slow":
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            pending.delete(timer);
            resolve();
          }, NOTION_SLOW_DELAY_MS);
          pending.add(timer);
        });
        return false;
    }
  }

  /** Notion: HTTP Basic with the raw client id and secret (no form-encoding). */
  function authenticate(req: IncomingMessage): NotionPeerClient | undefined {
    const encoded = /^Basic (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    if (encoded === undefined) return undefined;
    const decoded = Buffer.from(encoded, "base64").toString("utf8");
    const index = decoded.indexOf(":");
    const id = decoded.slice(0, index);
    const secret = decoded.slice(index + 1);
    return options.clients.find((c) => c.client_id === id && c.client_secret === secret);
  }

  function issue(res: ServerResponse, inst: NotionInstallation): void {
    const accessToken = `ntn_${randomBytes(24).toString("base64url")}`;
    const refreshToken = `nrt_${randomBytes(24).toString("base64url")}`;
    accessTokens.set(accessToken, inst);
    refreshTokens.set(refreshToken, { installation: inst, accessToken });
    sendJson(res, {
      access_token: accessToken,
      token_type: "bearer",
      refresh_token: refreshToken,
      bot_id: inst.botId,
      workspace_id: inst.workspaceId,
      workspace_name: inst.workspaceName,
      workspace_icon: null,
      owner: { type: "user", user: { object: "user", id: inst.ownerUserId, name: inst.username, type: "person" } },
      duplicated_template_id: null,
      request_id: randomBytes(8).toString("hex"),
    });
  }

  async function token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    tokenRequests += 1;
    if (await applyFault(tokenFault, res)) return;
    const client = authenticate(req);
    if (client === undefined) return notionError(res, 401, "invalid_client", "Client authentication failed.");
    if (req.headers["notion-version"] === undefined) {
      return notionError(res, 400, "missing_version", "Notion-Version header failed validation: Notion-Version header should be defined.");
    }
    const body = await readJson(req);
    if (body === undefined) return notionError(res, 400, "invalid_request", "Body must be JSON.");
    if (body["grant_type"] === "authorization_code") {
      const record = codes.get(String(body["code"]));
      if (record === undefined || record.used || record.installation.clientId !== client.client_id) {
        if (record !== undefined) record.used = true;
        return notionError(res, 400, "invalid_grant", "Invalid code.");
      }
      record.used = true;
      if (body["redirect_uri"] !== record.redirectUri) return notionError(res, 400, "invalid_grant", "Invalid redirect_uri.");
      return issue(res, record.installation);
    }
    if (body["grant_type"] === "refresh_token") {
      const value = String(body["refresh_token"]);
      const record = refreshTokens.get(value);
      if (record === undefined || record.installation.clientId !== client.client_id) {
        return notionError(res, 400, "invalid_grant", "Invalid refresh token.");
      }
      // Rotation: the old refresh token and its access token stop working.
      refreshTokens.delete(value);
      accessTokens.delete(record.accessToken);
      return issue(res, record.installation);
    }
    return notionError(res, 400, "unsupported_grant_type", "Unsupported grant_type.");
  }

  async function revoke(req: IncomingMessage, res: ServerResponse): Promise<void> {
    revocationRequests += 1;
    if (await applyFault(revocationFault, res)) return;
    if (authenticate(req) === undefined) return notionError(res, 401, "invalid_client", "Client authentication failed.");
    const body = await readJson(req);
    const value = String(body?.["token"] ?? "");
    const refresh = refreshTokens.get(value);
    if (refresh !== undefined) {
      refreshTokens.delete(value);
      accessTokens.delete(refresh.accessToken);
    }
    const inst = accessTokens.get(value);
    if (inst !== undefined) {
      accessTokens.delete(value);
      for (const [key, entry] of refreshTokens) if (entry.accessToken === value) refreshTokens.delete(key);
    }
    sendJson(res, {});
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", apiBase);
    if (url.pathname === "/v1/oauth/authorize" && req.method === "GET") {
      const client = options.clients.find((c) => c.client_id === url.searchParams.get("client_id"));
      const redirectUri = url.searchParams.get("redirect_uri") ?? "";
      if (client === undefined || !client.redirect_uris.includes(redirectUri)) {
        res.writeHead(400, { "content-type": "text/plain" });
        res.end("invalid client_id or redirect_uri");
        return;
      }
      const back = new URL(redirectUri);
      const state = url.searchParams.get("state");
      if (url.searchParams.get("response_type") !== "code" || url.searchParams.get("owner") !== "user") {
        back.searchParams.set("error", "invalid_request");
      } else if (url.searchParams.get("decision") === "deny") {
        back.searchParams.set("error", "access_denied");
      } else {
        const code = randomBytes(16).toString("hex");
        const username = url.searchParams.get("user") ?? "notion-user";
        codes.set(code, { installation: installation(username, client.client_id), redirectUri, used: false });
        back.searchParams.set("code", code);
      }
      if (state !== null) back.searchParams.set("state", state);
      res.writeHead(302, { location: back.href });
      res.end();
      return;
    }
    if (url.pathname === "/v1/oauth/token" && req.method === "POST") return token(req, res);
    if (url.pathname === "/v1/oauth/revoke" && req.method === "POST") return revoke(req, res);
    if (url.pathname === "/v1/users/me" && req.method === "GET") {
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
      const inst = bearer === undefined ? undefined : accessTokens.get(bearer);
      if (inst === undefined) return notionError(res, 401, "unauthorized", "API token is invalid.");
      return sendJson(res, {
        object: "user",
        id: inst.botId,
        name: "oauth-broker",
        type: "bot",
        bot: { owner: { type: "user", user: { object: "user", id: inst.ownerUserId } }, workspace_name: inst.workspaceName },
      });
    }
    notionError(res, 404, "object_not_found", "Not found.");
  }

  return {
    apiBase,
    tokenRequests: () => tokenRequests,
    revocationRequests: () => revocationRequests,
    setTokenEndpointFault: (fault) => {
      tokenFault = fault;
    },
    setRevocationEndpointFault: (fault) => {
      revocationFault = fault;
    },
    revokeUser(username) {
      for (const [key, inst] of accessTokens) if (inst.username === username) accessTokens.delete(key);
      for (const [key, entry] of refreshTokens) if (entry.installation.username === username) refreshTokens.delete(key);
    },
    installation,
    isAccessTokenValid: (value) => accessTokens.has(value),
    driveConsent(authorizationUrl, choices) {
      const url = new URL(authorizationUrl);
      url.searchParams.set("user", choices.username);
      if (choices.deny === true) url.searchParams.set("decision", "deny");
      return driveConsent(url, choices);
    },
    async close() {
      for (const timer of pending) clearTimeout(timer);
      pending.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  if (!(req.headers["content-type"] ?? "").startsWith("application/json")) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
