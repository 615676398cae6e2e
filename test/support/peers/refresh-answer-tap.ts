/**
 * Sits in front of a peer's token endpoint for two behaviours of real providers that the
 * oidc-provider library has no switch for:
 * - a lost answer: the provider processes a refresh (rotating the refresh token) but its answer
 *   never reaches the client, as when the client dies after sending (`withholdNext`);
 * - a reuse window: a rotated-out refresh token presented again within `reuseWindowMs` of its
 *   rotation gets the same answer again instead of being treated as a replay (RingCentral-like;
 *   Okta and Auth0 call it a grace period). Outside the window the request reaches the provider,
 *   which revokes the whole grant.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

export interface RefreshAnswerTap {
  /**
   * Called for each token request before the provider sees it; true when the tap answered it.
   * Reads the body and leaves it as `req.body` (oidc-provider accepts a pre-read body).
   */
  intercept(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  /** Every refresh from now on is processed, but its answer is withheld until the client goes away. */
  setWithholdAnswers(withhold: boolean): void;
  /** Answers processed and withheld whose client is still connected. */
  withheldAnswers(): number;
  /** Replays answered from the reuse window. */
  forgivenReuses(): number;
}

export function createRefreshAnswerTap(options: { readonly reuseWindowMs?: number | undefined }): RefreshAnswerTap {
  const answers = new Map<string, { readonly body: string; readonly at: number }>();
  let withhold = false;
  let withheld = 0;
  let forgiven = 0;

  return {
    async intercept(req, res) {
      if (options.reuseWindowMs === undefined && !withhold) return false;
      const raw = await readBody(req);
      Object.assign(req, { body: raw });
      const presented = new URLSearchParams(raw).get("refresh_token");
      if (presented === null) return false;
      const earlier = answers.get(presented);
      if (earlier !== undefined && options.reuseWindowMs !== undefined && Date.now() - earlier.at <= options.reuseWindowMs) {
        forgiven += 1;
        res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(earlier.body);
        return true;
      }
      const withholdThis = withhold;
      const end = res.end.bind(res);
      // koa sends the whole answer with one `end(body)`.
      res.end = ((chunk?: unknown, ...rest: unknown[]) => {
        if (res.statusCode === 200 && (typeof chunk === "string" || Buffer.isBuffer(chunk))) {
          answers.set(presented, { body: chunk.toString(), at: Date.now() });
        }
        if (!withholdThis) return (end as (...args: unknown[]) => ServerResponse)(chunk, ...rest);
        withheld += 1;
        res.once("close", () => {
          withheld -= 1;
          res.destroy();
        });
        return res;
      }) as ServerResponse["end"];
      return false;
    },
    setWithholdAnswers(value) {
      withhold = value;
    },
    withheldAnswers: () => withheld,
    forgivenReuses: () => forgiven,
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString("utf8");
}
