/** BROKER_PUBLIC_URL follows the HTTP listener when unset; a loopback URL on another port is flagged. */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load-config.js";
import { publicUrlMismatch } from "../../src/config/public-url.js";

const readFile = (path: string): string => {
  if (path.endsWith("package.json")) return JSON.stringify({ version: "0.0.0-test" });
  throw new Error(`unexpected read of ${path}`);
};
const load = (env: Record<string, string>) => loadConfig({ env, readFile });

describe("BROKER_PUBLIC_URL", () => {
  it.each([
    ["127.0.0.1:18080", "http://127.0.0.1:18080/"],
    ["0.0.0.0:18080", "http://127.0.0.1:18080/"],
    ["[::]:18080", "http://127.0.0.1:18080/"],
    ["[::1]:18080", "http://[::1]:18080/"],
    ["localhost:9000", "http://localhost:9000/"],
  ])("unset, follows BROKER_HTTP_ADDR=%s", (address, expected) => {
    const config = load({ BROKER_HTTP_ADDR: address });
    expect(config.publicUrl.href).toBe(expected);
    expect(config.authorization.returnToAllowList).toEqual([expected]);
    expect(publicUrlMismatch(config.publicUrl, config.httpAddress)).toBeUndefined();
  });

  it("set, is kept as given", () => {
    expect(load({ BROKER_HTTP_ADDR: "0.0.0.0:18080", BROKER_PUBLIC_URL: "https://broker.example.com" }).publicUrl.href).toBe(
      "https://broker.example.com/",
    );
  });

  it("a loopback URL on another port than the listener is flagged, naming both and the fix", () => {
    const config = load({ BROKER_HTTP_ADDR: "127.0.0.1:18080", BROKER_PUBLIC_URL: "http://127.0.0.1:8080" });
    expect(publicUrlMismatch(config.publicUrl, config.httpAddress)).toBe(
      "BROKER_PUBLIC_URL http://127.0.0.1:8080 points at port 8080 of this machine but BROKER_HTTP_ADDR listens on 18080: redirects from providers will not reach the broker unless something forwards that port; set BROKER_PUBLIC_URL to http://127.0.0.1:18080 or unset it",
    );
    expect(publicUrlMismatch(new URL("http://localhost"), config.httpAddress)).toContain("port 80 ");
  });

  it("an external host or a port chosen at bind time is not flagged", () => {
    const config = load({ BROKER_HTTP_ADDR: "0.0.0.0:18080", BROKER_PUBLIC_URL: "https://broker.example.com" });
    expect(publicUrlMismatch(config.publicUrl, config.httpAddress)).toBeUndefined();
    expect(publicUrlMismatch(new URL("http://127.0.0.1:8080"), { host: "127.0.0.1", port: 0 })).toBeUndefined();
  });
});
