/**
 * A plain OAuth 2.0 server (the broker's `oauth2` kind) whose token and userinfo answers the
 * test scripts: by default it behaves (a code `code-for-<user>` is exchanged for tokens of that
 * user, userinfo names them), and `script` makes the next answers anything a real provider has
 * been seen to send: an RFC 6749 error, a 429, a 5xx, a body that is not JSON, a late answer.
 * Endpoints are matched by how their path ends, so a provider kind with its own paths (Notion's
 * `/v1/oauth/token`) can be pointed at it too. It is an OpenID issuer too, at its base URL, whose
 * discovery names no userinfo endpoint: a test scripts the token answer with an `idToken` it signs.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";

export interface ScriptedAnswer {
  readonly status?: number;
  /** A JSON value, or a string sent as it is. */
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /** Answers only after this long (or never, when the client goes away first). */
  readonly delayMs?: number;
}

/** `userinfo` is any account lookup (`…/userinfo`, YouTube's `…/channels`). */
export type ScriptedEndpoint = "token" | "userinfo";

export interface ScriptedOauth2Peer {
  readonly baseUrl: string;
  /** The YAML of a provider `id` at this peer, for the broker's `providers:` mapping. */
  providerYaml(id: string, options?: { readonly timeoutMs?: number }): string;
  /** The next `count` answers of `endpoint` (default: every answer until `reset`). */
  script(endpoint: ScriptedEndpoint, answer: ScriptedAnswer, count?: number): void;
  reset(): void;
  /** Requests each endpoint received. */
  requests(endpoint: ScriptedEndpoint): number;
  /** An ID token of the peer's OpenID issuer (`iss`, `iat` and `exp` filled in), for a scripted token answer. */
  idToken(claims: Readonly<Record<string, unknown>>): Promise<string>;
  close(): Promise<void>;
}

export const SCRIPTED_CLIENT_SECRET = "scripted-peer-client-secret";

function userOfCode(code: string): string {
  return code.startsWith("code-for-") ? code.slice("code-for-".length) : "someone";
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

export async function startScriptedOauth2Peer(): Promise<ScriptedOauth2Peer> {
  const scripts: Record<ScriptedEndpoint, Array<{ answer: ScriptedAnswer; left: number }>> = { token: [], userinfo: [] };
  const counts: Record<ScriptedEndpoint, number> = { token: 0, userinfo: 0 };
  const ownerOfToken = new Map<string, string>();
  const pending = new Set<ServerResponse>();
  let signing: Promise<{ privateKey: CryptoKey; publicJwk: JWK }> | undefined;
  const signingKey = () =>
    (signing ??= generateKeyPair("RS256").then(async ({ privateKey, publicKey }) => ({
      privateKey,
      publicJwk: { ...(await exportJWK(publicKey)), kid: "scripted", alg: "RS256", use: "sig" },
    })));

  function nextScripted(endpoint: ScriptedEndpoint): ScriptedAnswer | undefined {
    const [first] = scripts[endpoint];
    if (first === undefined) return undefined;
    first.left -= 1;
    if (first.left <= 0) scripts[endpoint].shift();
    return first.answer;
  }

  function send(res: ServerResponse, answer: ScriptedAnswer): void {
    const write = () => {
      pending.delete(res);
      if (res.destroyed) return;
      const text = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body ?? {});
      res.writeHead(answer.status ?? 200, { "content-type": typeof answer.body === "string" ? "text/plain" : "application/json", ...answer.headers });
      res.end(text);
    };
    if (answer.delayMs === undefined) return write();
    pending.add(res);
    const timer = setTimeout(write, answer.delayMs);
    res.on("close", () => clearTimeout(timer));
  }

  /** Without a `scope` in the request, the answer names none: what was asked is granted. */
  function issue(user: string, scope: string | null): ScriptedAnswer {
    const accessToken = `at-${randomBytes(12).toString("hex")}`;
    ownerOfToken.set(accessToken, user);
    const refreshToken = `rt-${user}-${randomBytes(12).toString("hex")}`;
    return { body: { access_token: accessToken, token_type: "Bearer", expires_in: 3600, refresh_token: refreshToken, ...(scope === null ? {} : { scope }) } };
  }

  const server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? "/", "http://peer").pathname;
      if (path.endsWith("/token")) {
        counts.token += 1;
        const form = await readForm(req);
        const scripted = nextScripted("token");
        if (scripted !== undefined) return send(res, scripted);
        const user = form.get("grant_type") === "refresh_token" ? (form.get("refresh_token") ?? "").split("-")[1] ?? "someone" : userOfCode(form.get("code") ?? "");
        return send(res, issue(user, form.get("scope")));
      }
      // The account lookup: userinfo, or YouTube's channel list.
      if (path.endsWith("/userinfo") || path.endsWith("/channels")) {
        counts.userinfo += 1;
        const scripted = nextScripted("userinfo");
        if (scripted !== undefined) return send(res, scripted);
        const token = (req.headers.authorization ?? "").replace(/^Bearer /, "");
        const user = ownerOfToken.get(token);
        return send(res, user === undefined ? { status: 401, body: { error: "invalid_token" } } : { body: { sub: user, email: `${user}@example.test` } });
      }
      if (path === "/revoke") return send(res, { body: {} });
      if (path === "/.well-known/openid-configuration") {
        return send(res, {
          body: {
            issuer: baseUrl,
            authorization_endpoint: `${baseUrl}/authorize`,
            token_endpoint: `${baseUrl}/token`,
            jwks_uri: `${baseUrl}/jwks`,
            response_types_supported: ["code"],
            subject_types_supported: ["public"],
            id_token_signing_alg_values_supported: ["RS256"],
          },
        });
      }
      if (path === "/jwks") return send(res, { body: { keys: [(await signingKey()).publicJwk] } });
      send(res, { status: 404, body: { error: "not_found" } });
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    baseUrl,
    providerYaml(id, options = {}) {
      return [
        `  ${id}:`,
        "    kind: oauth2",
        "    clientId: broker-client",
        "    clientSecret: ${PEER_SECRET}",
        "    defaultScopes: [read]",
        "    allowedScopes: [read, write]",
        `    timeoutMs: ${options.timeoutMs ?? 1500}`,
        `    endpoints: { authorization: '${baseUrl}/authorize', token: '${baseUrl}/token', userinfo: '${baseUrl}/userinfo', revocation: '${baseUrl}/revoke' }`,
        "",
      ].join("\n");
    },
    script(endpoint, answer, count = Number.POSITIVE_INFINITY) {
      scripts[endpoint].push({ answer, left: count });
    },
    reset() {
      scripts.token.length = 0;
      scripts.userinfo.length = 0;
    },
    requests: (endpoint) => counts[endpoint],
    async idToken(claims) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: baseUrl, iat: now, exp: now + 600, ...claims })
        .setProtectedHeader({ alg: "RS256", kid: "scripted", typ: "JWT" })
        .sign((await signingKey()).privateKey);
    },
    async close() {
      for (const res of pending) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
