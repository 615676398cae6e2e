/**
 * `host:port` listen addresses (`BROKER_GRPC_ADDR`, `BROKER_HTTP_ADDR`). IPv6 literals go in
 * brackets (RFC 3986 §3.2.2); port 0 asks the system for a free port, which the tests use.
 */
import { isIP, isIPv6 } from "node:net";
import type { ListenAddress } from "./types.js";

const ADDRESS = /^(?:\[([^\]]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;
const HOSTNAME_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Parses `host:port`; undefined when it is not one. */
export function parseListenAddress(value: string): ListenAddress | undefined {
  const match = ADDRESS.exec(value.trim());
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  const [, bracketed, plain] = match;
  if (bracketed !== undefined) return isIPv6(bracketed) ? { host: bracketed, port } : undefined;
  if (plain === undefined) return undefined;
  if (/^[\d.]+$/.test(plain)) return isIP(plain) === 4 ? { host: plain, port } : undefined;
  return plain.split(".").every((label) => HOSTNAME_LABEL.test(label)) ? { host: plain, port } : undefined;
}
