/**
 * `BROKER_PUBLIC_URL`, the base of the redirect URI the providers send browsers back to. Unset,
 * it follows the HTTP listener, so moving `BROKER_HTTP_ADDR` moves the redirect URI with it
 * (a fixed default sent the browser to whatever listened on the old port).
 */
import type { ListenAddress } from "./types.js";

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);
const LOOPBACK_HOST = /^(?:127(?:\.\d{1,3}){3}|localhost|\[::1\]|::1)$/i;

/** The listener's own address; a wildcard host is reached on 127.0.0.1. Undefined for port 0 (not known before binding). */
export function publicUrlOfListener(address: ListenAddress): string | undefined {
  if (address.port === 0) return undefined;
  const host = WILDCARD_HOSTS.has(address.host) ? "127.0.0.1" : address.host.includes(":") ? `[${address.host}]` : address.host;
  return `http://${host}:${address.port}`;
}

/**
 * A public URL on this machine (loopback host) whose port is not the listener's sends the
 * browser elsewhere: worth a warning, not a refusal (a local proxy may forward it).
 */
export function publicUrlMismatch(publicUrl: URL, address: ListenAddress): string | undefined {
  if (address.port === 0 || !LOOPBACK_HOST.test(publicUrl.hostname)) return undefined;
  const port = Number(publicUrl.port || (publicUrl.protocol === "https:" ? 443 : 80));
  if (port === address.port) return undefined;
  return `BROKER_PUBLIC_URL ${publicUrl.origin} points at port ${port} of this machine but BROKER_HTTP_ADDR listens on ${address.port}: redirects from providers will not reach the broker unless something forwards that port; set BROKER_PUBLIC_URL to http://127.0.0.1:${address.port} or unset it`;
}
