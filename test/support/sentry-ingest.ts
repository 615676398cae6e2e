/**
 * A Sentry ingestion endpoint for tests: a real HTTP server on 127.0.0.1 that accepts envelopes
 * (`POST /api/<project>/envelope/`, gzip or not) and keeps them, raw and parsed. A DSN
 * `http://publickey@127.0.0.1:<port>/1` points the SDK's own transport at it.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync, inflateSync } from "node:zlib";

export interface ReceivedEnvelope {
  readonly path: string;
  /** The decompressed body, exactly as the SDK sent it. */
  readonly raw: string;
  /** Payloads of the envelope's `event` items. */
  readonly events: ReadonlyArray<Record<string, unknown>>;
}

export interface SentryIngest {
  readonly dsn: string;
  readonly envelopes: readonly ReceivedEnvelope[];
  /** Forgets what was received. */
  clear(): void;
  /** Every `event` item received so far. */
  events(): Array<Record<string, unknown>>;
  /** Resolves once `count` events arrived; rejects after `timeoutMs`. */
  waitForEvents(count: number, timeoutMs?: number): Promise<Array<Record<string, unknown>>>;
  close(): Promise<void>;
}

async function bodyOf(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  const encoding = request.headers["content-encoding"];
  if (encoding === "gzip") return gunzipSync(body).toString("utf8");
  if (encoding === "deflate") return inflateSync(body).toString("utf8");
  return body.toString("utf8");
}

/** Envelope: a header line, then per item an item-header line and a payload line. */
function eventsOf(raw: string): Array<Record<string, unknown>> {
  const lines = raw.split("\n");
  const events: Array<Record<string, unknown>> = [];
  for (let i = 1; i < lines.length - 1; i += 2) {
    const header = JSON.parse(lines[i] ?? "{}") as { type?: string };
    if (header.type === "event") events.push(JSON.parse(lines[i + 1] ?? "{}") as Record<string, unknown>);
  }
  return events;
}

export async function startSentryIngest(): Promise<SentryIngest> {
  const envelopes: ReceivedEnvelope[] = [];
  const server = createServer((request, response) => {
    void (async () => {
      const raw = await bodyOf(request);
      envelopes.push({ path: request.url ?? "", raw, events: raw === "" ? [] : eventsOf(raw) });
      response.writeHead(200, { "content-type": "application/json" }).end("{}");
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const events = () => envelopes.flatMap((envelope) => [...envelope.events]);
  return {
    dsn: `http://publickey@127.0.0.1:${port}/1`,
    envelopes,
    clear: () => void envelopes.splice(0),
    events,
    async waitForEvents(count, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (events().length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} Sentry events, got ${events().length}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return events();
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
