/** The metrics registry: its own per broker, the gRPC metrics by name, process metrics included. */
import type { Counter, Histogram } from "prom-client";
import { register as globalRegistry } from "prom-client";
import { describe, expect, expectTypeOf, it } from "vitest";
import { counterTally, createMetrics } from "../../src/observability/metrics.js";

describe("createMetrics", () => {
  it("renders the gRPC metrics with their labels and the process metrics", async () => {
    const metrics = createMetrics();
    const labels = { grpc_service: "oauthbroker.v1.TokenService", grpc_method: "GetAccessToken" };
    metrics.rpcStarted.inc(labels);
    metrics.rpcHandled.inc({ ...labels, grpc_code: "OK" });
    metrics.rpcHandlingSeconds.observe(labels, 0.003);

    const { contentType, body } = await metrics.render();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(body).toContain('grpc_server_started_total{grpc_service="oauthbroker.v1.TokenService",grpc_method="GetAccessToken"} 1');
    expect(body).toContain('grpc_server_handled_total{grpc_service="oauthbroker.v1.TokenService",grpc_method="GetAccessToken",grpc_code="OK"} 1');
    expect(body).toContain("# TYPE grpc_server_handling_seconds histogram");
    // 3 ms lands in the 5 ms bucket, not the 2.5 ms one.
    expect(body).toContain('grpc_server_handling_seconds_bucket{le="0.0025",grpc_service="oauthbroker.v1.TokenService",grpc_method="GetAccessToken"} 0');
    expect(body).toContain('grpc_server_handling_seconds_bucket{le="0.005",grpc_service="oauthbroker.v1.TokenService",grpc_method="GetAccessToken"} 1');
    expect(body).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(body).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });

  it("adds a tallied series to its counter at every read, once, beside direct increments", async () => {
    const metrics = createMetrics();
    const labels = { grpc_service: "s", grpc_method: "m" };
    const tally = counterTally(metrics.rpcStarted, labels);
    for (let i = 0; i < 1000; i++) tally.inc();
    metrics.rpcStarted.inc(labels, 2);
    const series = 'grpc_server_started_total{grpc_service="s",grpc_method="m"}';
    expect((await metrics.render()).body).toContain(`${series} 1002`);
    // A second read adds nothing that was already added.
    expect((await metrics.render()).body).toContain(`${series} 1002`);
    tally.inc();
    const read = await metrics.rpcStarted.get();
    expect(read.values.find((value) => value.labels["grpc_method"] === "m")?.value).toBe(1003);
    // Another counter's tallies stay pending until that counter is read.
    const handled = counterTally(metrics.rpcHandled, { ...labels, grpc_code: "OK" });
    handled.inc();
    await metrics.rpcStarted.get();
    expect((await metrics.rpcHandled.get()).values.map((value) => value.value)).toEqual([1]);
  });

  it("spans 0.5 ms to 10 s in the latency histogram", async () => {
    const metrics = createMetrics();
    metrics.rpcHandlingSeconds.observe({ grpc_service: "s", grpc_method: "m" }, 20);
    const { body } = await metrics.render();
    const bounds = [...body.matchAll(/grpc_server_handling_seconds_bucket\{le="([^"]+)"/g)].map((match) => match[1]);
    expect(bounds[0]).toBe("0.0005");
    expect(bounds.at(-2)).toBe("10");
    expect(bounds.at(-1)).toBe("+Inf");
  });

  it("keeps each broker's metrics apart and out of the global registry", async () => {
    const first = createMetrics();
    const second = createMetrics();
    expect(first.registry).not.toBe(second.registry);
    first.rpcStarted.inc({ grpc_service: "s", grpc_method: "m" }, 5);
    expect((await first.registry.getSingleMetric("grpc_server_started_total")?.get())?.values[0]?.value).toBe(5);
    expect((await second.registry.getSingleMetric("grpc_server_started_total")?.get())?.values).toEqual([]);
    expect(globalRegistry.getSingleMetric("grpc_server_started_total")).toBeUndefined();
  });

  it("types the label names", () => {
    const metrics = createMetrics();
    expectTypeOf(metrics.rpcHandled).toEqualTypeOf<Counter<"grpc_service" | "grpc_method" | "grpc_code">>();
    expectTypeOf(metrics.rpcHandlingSeconds).toEqualTypeOf<Histogram<"grpc_service" | "grpc_method">>();
  });
});
