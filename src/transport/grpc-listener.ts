/**
 * The gRPC listener (`BROKER_GRPC_ADDR`), served by `@grpc/grpc-js`: the hot path for internal
 * services. Unknown methods get UNIMPLEMENTED from grpc-js itself.
 */
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import type { GrpcTlsConfig, ListenAddress } from "../config/types.js";
import { toGrpcService, type GrpcServiceBinding } from "./grpc-adapter.js";
import type { Admission } from "./admission.js";
import { createGrpcRequestGate } from "./grpc-request-gate.js";
import { DEFAULT_MAX_REQUEST_BYTES } from "../config/limits.js";

export interface GrpcListener {
  readonly port: number;
  /** Stops accepting, waits for running calls up to `graceMs`, then cancels the rest. */
  close(graceMs: number): Promise<void>;
}

export function formatAddress(address: ListenAddress): string {
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function credentials(tls: GrpcTlsConfig | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const clientCa = tls.clientCaFile === undefined ? null : readFileSync(tls.clientCaFile);
  // With a client CA every caller must present a certificate it signed (mutual TLS).
  return grpc.ServerCredentials.createSsl(
    clientCa,
    [{ private_key: readFileSync(tls.keyFile), cert_chain: readFileSync(tls.certFile) }],
    clientCa !== null,
  );
}

export async function startGrpcListener(options: {
  address: ListenAddress;
  bindings: readonly GrpcServiceBinding[];
  tls?: GrpcTlsConfig | undefined;
  /** `limits.maxRequestBytes`: each request message, as sent and once inflated (grpc-js enforces both). */
  maxRequestBytes?: number | undefined;
  /** Checked from the metadata before the body is read; absent: every call is read. */
  admission?: Admission | undefined;
}): Promise<GrpcListener> {
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": maxRequestBytes,
    "grpc.keepalive_permit_without_calls": 1,
    interceptors: options.admission ? [createGrpcRequestGate({ admission: options.admission, maxRequestBytes })] : [],
  });
  for (const binding of options.bindings) {
    const { definition, implementation } = toGrpcService(binding);
    server.addService(definition, implementation);
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(formatAddress(options.address), credentials(options.tls), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });
  return {
    port,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
