/**
 * TLS for the gRPC listener from `BROKER_GRPC_TLS_CERT` / `BROKER_GRPC_TLS_KEY` (PEM files) and,
 * for mutual TLS, `BROKER_GRPC_TLS_CLIENT_CA`. Files are checked for readability here so a typo
 * is reported with every other problem instead of failing the listener later.
 */
import { accessSync, constants } from "node:fs";
import { resolve } from "node:path";
import type { Problems } from "./config-error.js";
import type { GrpcTlsConfig } from "./types.js";
import type { Env } from "./yaml-reader.js";

export function readGrpcTls(problems: Problems, env: Env): GrpcTlsConfig | undefined {
  const file = (name: string) => {
    const value = env[name];
    if (value === undefined || value === "") return undefined;
    const path = resolve(value);
    try {
      accessSync(path, constants.R_OK);
    } catch {
      problems.add(name, `cannot read ${path}`);
    }
    return path;
  };
  const certFile = file("BROKER_GRPC_TLS_CERT");
  const keyFile = file("BROKER_GRPC_TLS_KEY");
  const clientCaFile = file("BROKER_GRPC_TLS_CLIENT_CA");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.add("BROKER_GRPC_TLS_CERT", "set both BROKER_GRPC_TLS_CERT and BROKER_GRPC_TLS_KEY, or neither");
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    if (clientCaFile !== undefined) problems.add("BROKER_GRPC_TLS_CLIENT_CA", "needs BROKER_GRPC_TLS_CERT and BROKER_GRPC_TLS_KEY");
    return undefined;
  }
  return { certFile, keyFile, clientCaFile };
}
