/**
 * A provider's token endpoint as the proactive refresher meets it at scale: every
 * `refresh_token` grant is answered after a fixed delay (a provider's own latency) with a new
 * access token living one hour, the refresh token kept (no rotation). It counts the calls per
 * refresh token, so a benchmark can tell an integration refreshed twice from one never refreshed.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";

export interface ProviderLookalike {
  /** `http://127.0.0.1:<port>`; the token endpoint is `${origin}/token`. */
  readonly origin: string;
  /** Calls so far per refresh token. */
  readonly calls: ReadonlyMap<string, number>;
  /** Every answered grant's time (performance.now()), in order: the refresh rate over any window. */
  readonly answeredAt: readonly number[];
  close(): Promise<void>;
}

async function body(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function startProviderLookalike(options: { readonly delayMs?: number; readonly expiresInSeconds?: number } = {}): Promise<ProviderLookalike> {
  const delayMs = options.delayMs ?? 20;
  const expiresIn = options.expiresInSeconds ?? 3600;
  const calls = new Map<string, number>();
  const answeredAt: number[] = [];
  let issued = 0;
  const server = createServer((request, response) => {
    void body(request).then((text) => {
      const form = new URLSearchParams(text);
      const refreshToken = form.get("refresh_token");
      if (request.url !== "/token" || form.get("grant_type") !== "refresh_token" || refreshToken === null) {
        response.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: "unsupported_grant_type" }));
        return;
      }
      calls.set(refreshToken, (calls.get(refreshToken) ?? 0) + 1);
      setTimeout(() => {
        issued += 1;
        answeredAt.push(performance.now());
        response
          .writeHead(200, { "content-type": "application/json", "cache-control": "no-store" })
          .end(JSON.stringify({ access_token: `lookalike-access-${issued}`, token_type: "Bearer", expires_in: expiresIn }));
      }, delayMs);
    });
  });
  // Many replicas keep many connections open: no per-socket limit of its own.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    calls,
    answeredAt,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
