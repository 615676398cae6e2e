/**
 * Mutual TLS on the gRPC listener: a client certificate signed by the configured client CA
 * identifies a service (its SPIFFE ID), policy applies to it as to a JWT-identified service,
 * a bearer token still decides when sent, and a client without a certificate is refused.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { createAuthenticator } from "../../src/auth/authenticator.js";
import { loadOrCreateLocalSigningKey, signLocalToken } from "../../src/auth/local-signing-key.js";
import { createPolicyHolder } from "../../src/domain/policy.js";
import { createRpcPolicy } from "../../src/transport/rpc-policy.js";
import { ProviderService } from "../../src/gen/oauthbroker/v1/provider_service_pb.js";
import { StatusService } from "../../src/gen/oauthbroker/v1/status_service_pb.js";
import { createLogger } from "../../src/observability/logger.js";
import { bindService } from "../../src/transport/service-binding.js";
import { startTransportFixture, type TransportFixture } from "../support/transport-fixture.js";
import { unary, type GrpcFailure } from "../support/grpc-client.js";

const SPIFFE_ID = "spiffe://prod.example/ns/billing/sa/api";
let dir: string;
let fixture: TransportFixture;
let files: Record<"ca" | "serverCert" | "serverKey" | "clientCert" | "clientKey", Buffer>;
let adminToken: string;

function openssl(args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "oauth-broker-mtls-"));
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca"]);
  const issue = async (name: string, subject: string, san: string) => {
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject]);
    await writeFile(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "1", "-extfile", `${name}.ext`]);
  };
  await issue("server", "/CN=127.0.0.1", "IP:127.0.0.1");
  await issue("client", "/CN=billing", `URI:${SPIFFE_ID}`);
  const read = (name: string) => readFile(join(dir, name));
  files = {
    ca: await read("ca.pem"),
    serverCert: await read("server.pem"),
    serverKey: await read("server.key"),
    clientCert: await read("client.pem"),
    clientKey: await read("client.key"),
  };
  const key = await loadOrCreateLocalSigningKey(dir);
  adminToken = await signLocalToken(key, { subject: "ops", kind: "service", roles: ["admin"] });
  const logger = createLogger({ level: "silent" });
  fixture = await startTransportFixture({
    bindings: [
      bindService(ProviderService, { listProviders: () => ({ providers: [] }) }),
      bindService(StatusService, { getStatus: () => ({ version: "test" }) }),
    ],
    authentication: {
      authenticator: createAuthenticator({ issuers: [], localKey: key, logger }),
      policyHolder: createPolicyHolder(createRpcPolicy({ policies: [], providers: [] })),
    },
    grpcTls: { certFile: join(dir, "server.pem"), keyFile: join(dir, "server.key"), clientCaFile: join(dir, "ca.pem") },
  });
});

afterAll(async () => {
  await fixture?.close();
  await rm(dir, { recursive: true, force: true });
});

function client(withCertificate: boolean): grpc.Client {
  const credentials = withCertificate
    ? grpc.credentials.createSsl(files.ca, files.clientKey, files.clientCert)
    : grpc.credentials.createSsl(files.ca);
  return new grpc.Client(fixture.grpcAddress, credentials);
}

it("identifies a service by its verified client certificate and applies its policy", async () => {
  const c = client(true);
  await expect(unary(c, ProviderService.method.listProviders, {})).resolves.toBeDefined();
  // A service with no policy rule may only list providers.
  const denied = (await unary(c, StatusService.method.getStatus, {}).catch((e) => e)) as GrpcFailure;
  expect(denied.code).toBe(Code.PermissionDenied);
  expect(denied.details).toContain(SPIFFE_ID);
  // A bearer token, when sent, decides.
  const asAdmin = await unary(c, StatusService.method.getStatus, {}, { metadata: { authorization: `Bearer ${adminToken}` } });
  expect(asAdmin.response.version).toBe("test");
  c.close();
});

it("refuses a client without a certificate at the TLS handshake", async () => {
  const c = client(false);
  // A deadline only a hang reaches: a refused handshake answers UNAVAILABLE well before it, even
  // on a loaded machine, and a late one would read as DEADLINE_EXCEEDED instead.
  const failure = (await unary(c, ProviderService.method.listProviders, {}, { deadlineMs: 20_000 }).catch((e) => e)) as GrpcFailure;
  expect(failure.code).toBe(Code.Unavailable);
  c.close();
});
