/**
 * Turns whatever a handler throws into the status the caller receives (see error-mapping.ts),
 * for unary calls and for errors that surface in the middle of a response stream. Server faults
 * — what the caller sees as `INTERNAL` — are also handed to error tracking with the original
 * error (its cause chain included), tagged with the call's request id and method.
 */
import type { ConnectError } from "@connectrpc/connect";
import { disabledErrorReporter, type ErrorReporter } from "../../observability/error-reporter.js";
import { fullMethodName, type CallContext, type Interceptor } from "../call.js";
import { isServerFault, toConnectError } from "../error-mapping.js";
import { handleFailures } from "../service-binding.js";
import { grpcCodeName } from "./observe.js";

export interface ErrorInterceptorOptions {
  readonly reporter?: ErrorReporter | undefined;
}

export function createErrorInterceptor(options: ErrorInterceptorOptions = {}): Interceptor {
  const reporter = options.reporter ?? disabledErrorReporter;

  const mapAndReport = (call: CallContext, error: unknown): ConnectError => {
    const mapped = toConnectError(error);
    if (reporter.enabled && isServerFault(mapped)) {
      reporter.report(error, {
        requestId: call.requestId,
        method: fullMethodName(call),
        protocol: call.protocol,
        grpcCode: grpcCodeName(mapped.code),
        callerKind: call.principal?.kind,
      });
    }
    return mapped;
  };

  return (call, invoke) => handleFailures(call, invoke, (error) => mapAndReport(call, error));
}
