/**
 * Both listeners on port 0 with the real interceptor chain, mounting the given bindings plus
 * health and reflection: the transport layer exactly as the broker runs it, minus storage.
 */
import { Writable } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import { createLogger, type Logger } from "../../src/observability/logger.js";
import { createMetrics, type Metrics } from "../../src/observability/metrics.js";
import { startGrpcListener } from "../../src/transport/grpc-listener.js";
import { startHttpListener, type HttpRoute } from "../../src/transport/http-listener.js";
import { createHealth, type HealthState } from "../../src/transport/health.js";
import { createReflectionBindings } from "../../src/transport/reflection.js";
import { interceptBinding, type ServiceBinding } from "../../src/transport/service-binding.js";
import type { Interceptor } from "../../src/transport/call.js";
import type { GrpcTlsConfig } from "../../src/config/types.js";
import { createRequestIdInterceptor } from "../../src/transport/interceptors/request-id.js";
import { createObserveInterceptor } from "../../src/transport/interceptors/observe.js";
import { createErrorInterceptor } from "../../src/transport/interceptors/errors.js";
import { createDrainingInterceptor } from "../../src/transport/interceptors/draining.js";
import { createRequestEdgeInterceptor } from "../../src/transport/interceptors/request-edge.js";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.js";
import { OPEN_SERVICES } from "../../src/transport/open-services.js";
import type { ErrorReporter } from "../../src/observability/error-reporter.js";

export interface CapturedLog {
  readonly lines: Array<Record<string, unknown>>;
  readonly text: () => string;
}

export function captureLogger(): { logger: Logger; log: CapturedLog } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString("utf8"));
      callback();
    },
  });
  const logger = createLogger({ level: "debug", destination });
  return {
    logger,
    log: {
      get lines() {
        return chunks
          .join("")
          .split("\n")
          .filter(Boolean)
          .map((line) => JSON.parse(line) as Record<string, unknown>);
      },
      text: () => chunks.join(""),
    },
  };
}

export interface TransportFixture {
  readonly grpcAddress: string;
  readonly httpUrl: string;
  readonly metrics: Metrics;
  readonly health: HealthState;
  readonly log: CapturedLog;
  /** The logger the interceptors write to, for handlers whose lines the test inspects too. */
  readonly logger: Logger;
  setDraining(value: boolean): void;
  close(): Promise<void>;
}

export async function startTransportFixture(options: {
  bindings: ServiceBinding[];
  extraInterceptors?: Interceptor[];
  routes?: HttpRoute[];
  grpcTls?: GrpcTlsConfig;
  errorReporter?: ErrorReporter;
}): Promise<TransportFixture> {
  const { logger, log } = captureLogger();
  const metrics = createMetrics();
  let draining = false;
  const observe = createObserveInterceptor({ logger, metrics });
  const interceptors = [
    createRequestIdInterceptor(),
    observe.interceptor,
    createErrorInterceptor({ reporter: options.errorReporter }),
    createDrainingInterceptor({ isDraining: () => draining, openServices: OPEN_SERVICES }),
    ...(options.extraInterceptors ?? []),
    // Last, as in the broker: refusals of the body come after authentication.
    createRequestEdgeInterceptor(),
  ];
  const health = createHealth(options.bindings.map((b) => b.service.typeName));
  const served: DescService[] = [...options.bindings.map((b) => b.service), Health];
  const shutdown = new AbortController();
  const bindings = [...options.bindings, health.binding, ...createReflectionBindings(served)].map((b) =>
    interceptBinding(b, interceptors, shutdown.signal),
  );
  const grpcListener = await startGrpcListener({ address: { host: "127.0.0.1", port: 0 }, bindings, tls: options.grpcTls });
  const httpListener = await startHttpListener({
    address: { host: "127.0.0.1", port: 0 },
    bindings,
    routes: options.routes ?? [],
    onRouteError: (error) => logger.error({ err: error }, "route failed"),
  });
  return {
    grpcAddress: `127.0.0.1:${grpcListener.port}`,
    httpUrl: `http://127.0.0.1:${httpListener.port}`,
    metrics,
    health,
    log,
    logger,
    setDraining: (value) => {
      draining = value;
    },
    async close() {
      shutdown.abort();
      await Promise.all([grpcListener.close(1000), httpListener.close(1000)]);
    },
  };
}
