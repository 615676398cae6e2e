/**
 * The broker as a process on the embedded default (no DATABASE_URL, no Vault), called the ways
 * its callers call it: gRPC with a grpc-js client, Connect JSON over HTTP/1.1 as a browser does,
 * gRPC-Web, plus reflection, health, probes, metrics, restart persistence and shutdown.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import * as reflectionV1 from "../../src/gen/grpc/reflection/v1/reflection_pb.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { ComponentState } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { createLogger } from "../../src/observability/logger.js";
import { createBrokerDataDir, type BrokerDataDir } from "../support/broker-data-dir.js";
import { bidiExchange, grpcClient, unary, type GrpcFailure } from "../support/grpc-client.js";
import { runToExit, spawnBroker, type BrokerProcess } from "../support/broker-process.js";
import { freePort } from "../support/free-port.js";

const run = promisify(execFile);
const silent = createLogger({ level: "silent" });
let data: BrokerDataDir;
let broker: BrokerProcess;
let userToken: string;
let adminToken: string;

async function start(): Promise<BrokerProcess> {
  const httpPort = await freePort();
  return data.startBroker({ BROKER_HTTP_ADDR: `127.0.0.1:${httpPort}`, BROKER_PUBLIC_URL: `http://127.0.0.1:${httpPort}` }, 30_000);
}

beforeAll(async () => {
  data = await createBrokerDataDir("oauth-broker-e2e", silent);
  broker = await start();
  userToken = await data.token("alice", "user");
  adminToken = data.adminToken;
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  await data?.remove();
});

describe("the broker on the embedded default", () => {
  it("serves ListProviders over gRPC to an authenticated caller and refuses anonymous calls", async () => {
    const client = grpcClient(broker.grpcAddress);
    const { response } = await unary(client, ProviderService.method.listProviders, {}, { metadata: { authorization: `Bearer ${userToken}` } });
    expect(response.providers.map((p) => p.id)).toContain("sandbox");
    const anonymous = (await unary(client, ProviderService.method.listProviders, {}).catch((e) => e)) as GrpcFailure;
    expect(anonymous.code).toBe(Code.Unauthenticated);
    client.close();
  });

  it("answers Connect JSON over HTTP/1.1 and gRPC-Web on the HTTP listener", async () => {
    const res = await fetch(`${broker.httpUrl}/oauthbroker.v1.ProviderService/ListProviders`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${userToken}` },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { providers: unknown[] }).providers.length).toBeGreaterThan(0);
    const web = createClient(ProviderService, createGrpcWebTransport({ baseUrl: broker.httpUrl, httpVersion: "1.1" }));
    const viaWeb = await web.listProviders({}, { headers: { authorization: `Bearer ${userToken}` } });
    expect(viaWeb.providers.map((p) => p.id)).toContain("sandbox");
  });

  it("lists every RPC of the six services through reflection, without credentials", async () => {
    const client = grpcClient(broker.grpcAddress);
    const [list] = await bidiExchange(client, reflectionV1.ServerReflection.method.serverReflectionInfo, [
      { messageRequest: { case: "listServices", value: "" } },
    ]);
    const names = list?.messageResponse.case === "listServicesResponse" ? list.messageResponse.value.service.map((s) => s.name) : [];
    for (const service of ["Token", "Authorization", "Integration", "Provider", "Status", "Audit"]) {
      expect(names).toContain(`oauthbroker.v1.${service}Service`);
    }
    client.close();
  });

  it("reports health, readiness, metrics and status", async () => {
    const client = grpcClient(broker.grpcAddress);
    const health = await unary(client, Health.method.check, { service: "" });
    expect(health.response.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await fetch(`${broker.httpUrl}/healthz`)).status).toBe(200);
    const ready = await fetch(`${broker.httpUrl}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`${broker.httpUrl}/metrics`)).text();
    expect(metrics).toContain('grpc_server_handled_total{grpc_service="oauthbroker.v1.ProviderService",grpc_method="ListProviders",grpc_code="OK"}');
    expect(metrics).toContain("process_resident_memory_bytes");
    const status = await unary(client, StatusService.method.getStatus, {}, { metadata: { authorization: `Bearer ${adminToken}` } });
    expect(status.response.database?.state).toBe(ComponentState.OK);
    expect(status.response.keyService?.state).toBe(ComponentState.OK);
    expect(status.response.migrations?.appliedVersion).toBe(status.response.migrations?.latestVersion);
    const denied = (await unary(client, StatusService.method.getStatus, {}, { metadata: { authorization: `Bearer ${userToken}` } }).catch(
      (e) => e,
    )) as GrpcFailure;
    expect(denied.code).toBe(Code.PermissionDenied);
    client.close();
  });

  it("serves the web page with a strict content security policy and no third-party resources", async () => {
    const res = await fetch(`${broker.httpUrl}/`);
    expect(res.status).toBe(200);
    const html = await res.text();
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    // The inline script is exactly the one the policy allows.
    const script = /<script>([\s\S]*)<\/script>/.exec(html)?.[1] ?? "";
    const { createHash } = await import("node:crypto");
    expect(csp).toContain(`'sha256-${createHash("sha256").update(script).digest("base64")}'`);
    expect(html).not.toMatch(/(src|href)="https?:/);
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
  });

  it("shuts down gracefully on SIGTERM and keeps its data across a restart", async () => {
    const code = await broker.stop("SIGTERM");
    expect(code).toBe(0);
    expect(broker.output()).toContain('"msg":"stopped"');
    broker = await start();
    // Same database and keyring: migrations are already applied, the key service still decrypts.
    expect(broker.output()).not.toContain("migration applied");
    const ready = await fetch(`${broker.httpUrl}/readyz`);
    expect(ready.status).toBe(200);
  }, 60_000);
});

describe("after a crash", () => {
  it("restarts on the same data directory after SIGKILL, stopping the orphaned database first", async () => {
    await broker.stop("SIGKILL");
    broker = await start();
    expect(broker.output()).toContain("orphaned by a killed broker");
    expect((await fetch(`${broker.httpUrl}/readyz`)).status).toBe(200);
  }, 60_000);
});

describe("start-up failures", () => {
  it("lists every configuration problem and exits 1", async () => {
    const bad = await mkdtemp(join(tmpdir(), "oauth-broker-badcfg-"));
    const configPath = join(bad, "broker.yaml");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(
      configPath,
      ["providers:", "  google:", "    kind: google", "    clientId: abc", "    clientSecret: literal-secret", "    clientSecrte: x", "  notion:", "    kind: notion", "    clientId: n", "    clientSecret: ${NOT_SET_ANYWHERE}"].join("\n"),
    );
    const { code, output } = await runToExit(
      spawnBroker({ BROKER_DATA_DIR: bad, BROKER_CONFIG: configPath, BROKER_GRPC_ADDR: "nonsense" }),
    );
    expect(code).toBe(1);
    expect(output).toContain("providers.google.clientSecret: must be a ${ENV_VAR} reference");
    expect(output).toContain("providers.google.clientSecrte: unknown key");
    expect(output).toContain("NOT_SET_ANYWHERE, which is not set");
    expect(output).toContain("BROKER_GRPC_ADDR");
    expect(output).not.toContain("literal-secret");
    await rm(bad, { recursive: true, force: true });
  });

  it("exits non-zero with a clear message when the database is unreachable", async () => {
    const { code, output } = await runToExit(
      spawnBroker({ BROKER_DATA_DIR: data.dir, DATABASE_URL: "postgres://nobody:secretpw@127.0.0.1:1/none" }),
    );
    // An exit code of its own: a broker that hung instead is killed by runToExit and has none,
    // however long a loaded machine takes to start the process.
    expect(code).toBeGreaterThan(0);
    expect(output).toContain("cannot reach PostgreSQL");
    expect(output).not.toContain("secretpw");
  });

  it("applies migrations with npm run migrate", async () => {
    const migrateData = await createBrokerDataDir("oauth-broker-migrate", silent);
    try {
      const { stdout } = await run(process.execPath, ["--import", "tsx", "src/cli/migrate.ts"], {
        env: { PATH: process.env["PATH"] ?? "", BROKER_DATA_DIR: migrateData.dir },
      });
      expect(stdout).toMatch(/applied migrations 1|schema up to date/);
    } finally {
      await migrateData.remove();
    }
  }, 60_000);
});
