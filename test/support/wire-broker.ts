/**
 * The in-process broker with a gRPC and a Connect caller on its two listeners, its log in
 * memory, and `Bearer …` credentials for any principal: the set-up of the error-reason wire tests.
 */
import type { RunningBroker } from "../../src/server.js";
import { startInProcessBroker } from "./in-process-broker.js";
import { captureLogger, type CapturedLog } from "./log-capture.js";
import { wireCallers, type Wire, type WireCaller } from "./wire-call.js";

export interface WireBroker {
  readonly broker: RunningBroker;
  readonly httpPort: number;
  readonly grpcPort: number;
  readonly httpUrl: string;
  readonly dataDir: string;
  readonly log: CapturedLog;
  readonly callers: Record<Wire, WireCaller>;
  /** `Bearer …` of a locally signed credential. */
  bearer(subject: string, kind: "user" | "service", roles?: string[]): Promise<string>;
  close(): Promise<void>;
}

export interface WireBrokerOptions {
  readonly yaml: string;
  readonly databaseUrl: string;
  readonly env?: Readonly<Record<string, string>>;
  /** The HTTP listener's port, when peers must know the callback URLs beforehand. */
  readonly httpPort?: number;
}

export async function startWireBroker(options: WireBrokerOptions): Promise<WireBroker> {
  const captured = captureLogger();
  const started = await startInProcessBroker({ ...options, logger: captured.logger, name: "oauth-broker-wire" });
  const { broker } = started;
  const callers = wireCallers({ httpPort: broker.httpPort, grpcPort: broker.grpcPort });
  let closed = false;
  return {
    broker,
    httpPort: broker.httpPort,
    grpcPort: broker.grpcPort,
    httpUrl: started.httpUrl,
    dataDir: started.dataDir,
    log: captured.log,
    callers,
    bearer: async (subject, kind, roles) => `Bearer ${await started.token(subject, kind, roles)}`,
    async close() {
      if (closed) return;
      closed = true;
      for (const caller of Object.values(callers)) caller.close();
      await started.stop();
    },
  };
}
