/**
 * The observe interceptor: one line and the RPC metrics per call. Its per-call lines skip key
 * redaction (observe.ts says why), which is only sound while none of their fields is a
 * secret-bearing name; a server fault's line, which carries the error, is still redacted.
 */
import { describe, expect, it } from "vitest";
import { BrokerError } from "../../src/domain/errors.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { isSecretKey } from "../../src/observability/redaction.js";
import type { CallContext } from "../../src/transport/call.js";
import { createObserveInterceptor } from "../../src/transport/interceptors/observe.js";
import { captureLogger } from "../support/log-capture.js";

function call(method = "GetAccessToken"): CallContext {
  return {
    service: "oauthbroker.v1.TokenService",
    method,
    methodKind: "unary",
    protocol: "grpc",
    requestHeader: new Headers(),
    responseHeader: new Headers(),
    peer: "127.0.0.1:1234",
    requestId: "req-1",
    principal: { kind: "service", subject: "billing", issuer: "local" },
    signal: new AbortController().signal,
    deadline: undefined,
  };
}

describe("observe interceptor", () => {
  it("writes one line per call, none of whose fields is a secret-bearing name", async () => {
    const { logger, log } = captureLogger("info");
    const { interceptor } = createObserveInterceptor({ logger, metrics: createMetrics() });
    await interceptor(call(), async () => "ok");
    await expect(interceptor(call(), async () => Promise.reject(new BrokerError("not_found", "no such integration")))).rejects.toThrow();
    const written = log.lines;
    expect(written.map((line) => [line["msg"], line["grpcCode"]])).toEqual([
      ["rpc", "OK"],
      ["rpc", "NOT_FOUND"],
    ]);
    expect(written[0]).toMatchObject({ requestId: "req-1", method: "oauthbroker.v1.TokenService/GetAccessToken", caller: "service:billing", peer: "127.0.0.1:1234" });
    for (const line of written) expect(Object.keys(line).filter(isSecretKey)).toEqual([]);
  });

  it("redacts the error a server fault's line carries", async () => {
    const { logger, log } = captureLogger("info");
    const { interceptor } = createObserveInterceptor({ logger, metrics: createMetrics() });
    const fault = Object.assign(new Error("boom"), { token: "tok-visible-nowhere" });
    await expect(interceptor(call(), async () => Promise.reject(fault))).rejects.toThrow();
    const [line] = log.lines;
    expect(line?.["msg"]).toBe("rpc failed");
    expect(JSON.stringify(line)).not.toContain("tok-visible-nowhere");
  });

  it("counts calls per method and status code", async () => {
    const { logger } = captureLogger("info");
    const metrics = createMetrics();
    const { interceptor } = createObserveInterceptor({ logger, metrics });
    await interceptor(call(), async () => "ok");
    await interceptor(call(), async () => "ok");
    await interceptor(call("Other"), async () => "ok");
    await expect(interceptor(call(), async () => Promise.reject(new BrokerError("not_found", "gone")))).rejects.toThrow();
    const text = (await metrics.render()).body;
    expect(text).toContain('grpc_server_started_total{grpc_service="oauthbroker.v1.TokenService",grpc_method="GetAccessToken"} 3');
    expect(text).toContain('grpc_server_handled_total{grpc_service="oauthbroker.v1.TokenService",grpc_method="GetAccessToken",grpc_code="OK"} 2');
    expect(text).toContain('grpc_server_handled_total{grpc_service="oauthbroker.v1.TokenService",grpc_method="GetAccessToken",grpc_code="NOT_FOUND"} 1');
    expect(text).toContain('grpc_server_handled_total{grpc_service="oauthbroker.v1.TokenService",grpc_method="Other",grpc_code="OK"} 1');
    expect(text).toContain('grpc_server_handling_seconds_count{grpc_service="oauthbroker.v1.TokenService",grpc_method="GetAccessToken"} 3');
  });
});
