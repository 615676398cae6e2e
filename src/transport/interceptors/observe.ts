/**
 * One log line and the RPC metrics per call, with the final status code. Sits outside the
 * error-mapping interceptor so it sees the status the caller sees; the internal cause of a
 * server fault is logged here, never sent.
 */
import { Code } from "@connectrpc/connect";
import type { Logger } from "../../observability/logger.js";
import { counterTally, type Metrics, type Tally } from "../../observability/metrics.js";
import type { InflightWatchdog } from "../../observability/inflight-watchdog.js";
import { fullMethodName, type CallContext, type Interceptor } from "../call.js";
import { isServerFault, toConnectError } from "../error-mapping.js";
import { invokeSafely, observeStream } from "../service-binding.js";

export interface InFlightTracker {
  readonly count: number;
  /** Resolves when no call is in flight. */
  idle(): Promise<void>;
}

/** What the log line and the metrics of a call name. */
export type ObservedCall = Pick<CallContext, "service" | "method" | "protocol" | "peer" | "requestId" | "principal">;

export interface ObserveInterceptor {
  readonly interceptor: Interceptor;
  readonly inFlight: InFlightTracker;
  /**
   * The line and metrics of a call answered OK within one synchronous turn, `started` its
   * `process.hrtime.bigint()` on arrival (the gRPC warm path, warm-token-path.ts): the same ones
   * the interceptor leaves. It is never in flight across a turn, so neither the in-flight count
   * nor the watchdog can see it.
   */
  answeredAtOnce(call: ObservedCall, started: bigint): void;
}

/** Code names as gRPC spells them (`NOT_FOUND`), for logs and metric labels. */
export function grpcCodeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

interface MethodMetrics {
  readonly fullName: string;
  readonly started: Tally;
  readonly seconds: ReturnType<Metrics["rpcHandlingSeconds"]["labels"]>;
  readonly handled: Map<string, Tally>;
}

export function createObserveInterceptor(deps: {
  logger: Logger;
  metrics: Metrics;
  /** Watches unary calls for ones that outlive their deadline (`/readyz`, `oauth_broker_inflight_oldest_seconds`). */
  watchdog?: InflightWatchdog | undefined;
}): ObserveInterceptor {
  /**
   * The lines written here carry only the fields built below (plus the logger's mixin), none of
   * them a secret-bearing name (observability/redaction.ts), so key redaction can never censor
   * anything in them; yet pino ran each of its paths over each field of each line, the largest
   * cost of a warm GetAccessToken after the signature check (bench/warm-path.ts). The line of a
   * server fault carries the error, and goes through the redacting logger.
   */
  const callLog = deps.logger.child({}, { redact: { paths: [] } });
  // prom-client hashes the label set on every update, even a labelled child's: counters are
  // tallied (metrics.ts), the histogram is one labelled child per method.
  // By service, then method: the full name would be a new string to hash on every call.
  const perMethod = new Map<string, Map<string, MethodMetrics>>();
  const metricsFor = (call: ObservedCall): MethodMetrics => {
    let methods = perMethod.get(call.service);
    if (methods === undefined) {
      methods = new Map();
      perMethod.set(call.service, methods);
    }
    let entry = methods.get(call.method);
    if (entry === undefined) {
      const labels = { grpc_service: call.service, grpc_method: call.method };
      entry = {
        fullName: fullMethodName(call),
        started: counterTally(deps.metrics.rpcStarted, labels),
        seconds: deps.metrics.rpcHandlingSeconds.labels(labels),
        handled: new Map(),
      };
      methods.set(call.method, entry);
    }
    return entry;
  };
  let inFlight = 0;
  let idleWaiters: Array<() => void> = [];
  const settle = () => {
    inFlight -= 1;
    if (inFlight === 0) {
      for (const resolve of idleWaiters) resolve();
      idleWaiters = [];
    }
  };

  const finish = (call: ObservedCall, started: bigint, error: unknown) => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const failure = error === undefined ? undefined : toConnectError(error);
    const code = failure?.code ?? 0;
    const codeName = code === 0 ? "OK" : grpcCodeName(code);
    const metrics = metricsFor(call);
    let handled = metrics.handled.get(codeName);
    if (handled === undefined) {
      handled = counterTally(deps.metrics.rpcHandled, { grpc_service: call.service, grpc_method: call.method, grpc_code: codeName });
      metrics.handled.set(codeName, handled);
    }
    handled.inc();
    metrics.seconds.observe(seconds);
    const line = {
      requestId: call.requestId,
      method: metrics.fullName,
      protocol: call.protocol,
      peer: call.peer,
      caller: call.principal ? `${call.principal.kind}:${call.principal.subject}` : undefined,
      grpcCode: codeName,
      durationMs: Math.round(seconds * 1e6) / 1e3,
    };
    if (failure && isServerFault(failure)) {
      deps.logger.error({ ...line, err: error }, "rpc failed");
    } else if (failure) {
      callLog.info({ ...line, error: failure.rawMessage }, "rpc");
    } else {
      callLog.info(line, "rpc");
    }
    settle();
  };

  const interceptor: Interceptor = <R>(call: CallContext, invoke: () => Promise<R>): Promise<R> => {
    inFlight += 1;
    const started = process.hrtime.bigint();
    const unary = call.methodKind === "unary" || call.methodKind === "client_streaming";
    const watched = unary ? deps.watchdog?.begin(call.deadline) : undefined;
    metricsFor(call).started.inc();
    return invokeSafely(invoke).then(
      (result) => {
        watched?.();
        if (unary) {
          finish(call, started, undefined);
          return result;
        }
        return observeStream(result as AsyncIterable<unknown>, { onEnd: (error) => finish(call, started, error) }) as R;
      },
      (error: unknown) => {
        watched?.();
        finish(call, started, error);
        throw error;
      },
    );
  };

  return {
    interceptor,
    answeredAtOnce(call, started) {
      inFlight += 1;
      metricsFor(call).started.inc();
      finish(call, started, undefined);
    },
    inFlight: {
      get count() {
        return inFlight;
      },
      idle: () => (inFlight === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve))),
    },
  };
}

