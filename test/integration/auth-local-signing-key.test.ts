import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { createAuthenticator } from "../../src/auth/authenticator.js";
import { loadOrCreateLocalSigningKey, signLocalToken } from "../../src/auth/local-signing-key.js";
import { runTokenCommand } from "../../src/auth/token-command.js";
import type { JwtIssuerConfig } from "../../src/config/types.js";
import { createLogger } from "../../src/observability/logger.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "broker-auth-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const silent = createLogger({ level: "silent" });

describe("local signing key", () => {
  it("is created once, private (0600), and loaded again with the same kid", async () => {
    const dataDir = join(dir, "nested", "data");
    const created = await loadOrCreateLocalSigningKey(dataDir);
    const info = await stat(join(dataDir, "signing-key.json"));
    expect(info.mode & 0o777).toBe(0o600);
    const loaded = await loadOrCreateLocalSigningKey(dataDir);
    expect(loaded.kid).toBe(created.kid);
    expect(loaded.publicJwk).toEqual(created.publicJwk);
    expect(created.publicJwk).not.toHaveProperty("d");
    expect(created.issuer).toBe("oauth-broker-local");
    expect(created.audience).toBe("oauth-broker");
    // No temporary files are left behind.
    expect(await readdir(dataDir)).toEqual(["signing-key.json"]);
  });

  it("is the same key for concurrent starters", async () => {
    const keys = await Promise.all(Array.from({ length: 6 }, () => loadOrCreateLocalSigningKey(dir)));
    expect(new Set(keys.map((key) => key.kid)).size).toBe(1);
    expect((await readdir(dir)).filter((name) => name.endsWith(".tmp"))).toEqual([]);
  });

  it("refuses a key file readable by group or others", async () => {
    await loadOrCreateLocalSigningKey(dir);
    await chmod(join(dir, "signing-key.json"), 0o640);
    await expect(loadOrCreateLocalSigningKey(dir)).rejects.toMatchObject({
      code: "failed_precondition",
      message: expect.stringContaining("readable by group or others (mode 640)"),
    });
  });

  it("refuses a corrupt key file instead of replacing it", async () => {
    await writeFile(join(dir, "signing-key.json"), "{not json", { mode: 0o600 });
    await expect(loadOrCreateLocalSigningKey(dir)).rejects.toMatchObject({ code: "failed_precondition" });
    expect(await readFile(join(dir, "signing-key.json"), "utf8")).toBe("{not json");
  });

  it("signs tokens the authenticator accepts after a restart (key reloaded from disk)", async () => {
    const first = await loadOrCreateLocalSigningKey(dir);
    const token = await signLocalToken(first, { subject: "alice", kind: "user", ttlSeconds: 120 });
    const header = decodeProtectedHeader(token);
    const claims = decodeJwt(token);
    expect(header).toMatchObject({ alg: "EdDSA", kid: first.kid, typ: "JWT" });
    expect(claims).toMatchObject({ iss: "oauth-broker-local", aud: "oauth-broker", sub: "alice", kind: "user" });
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(120);

    const restarted = await loadOrCreateLocalSigningKey(dir);
    const authenticator = createAuthenticator({ issuers: [], localKey: restarted, logger: silent });
    expect(await authenticator.authenticate(`Bearer ${token}`)).toEqual({ kind: "user", subject: "alice", issuer: "local" });
  });
});

describe("npm run token", () => {
  function io() {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, stdout: (text: string) => void out.push(text), stderr: (text: string) => void err.push(text) };
  }
  const noIssuers = () => ({ dataDir: dir, auth: { issuers: [], protectMetrics: false } });

  it("prints a user token the broker accepts", async () => {
    const streams = io();
    expect(await runTokenCommand(["--user", "alice"], { config: noIssuers, ...streams })).toBe(0);
    expect(streams.err).toEqual([]);
    const token = streams.out.join("").trim();
    expect(token.split(".")).toHaveLength(3);
    const authenticator = createAuthenticator({ issuers: [], localKey: await loadOrCreateLocalSigningKey(dir), logger: silent });
    expect(await authenticator.authenticate(`Bearer ${token}`)).toEqual({ kind: "user", subject: "alice", issuer: "local" });
  });

  it("prints a service token, with roles and a lifetime", async () => {
    const streams = io();
    expect(
      await runTokenCommand(["--service", "billing", "--role", "admin", "--role", "ops", "--ttl", "60"], {
        config: noIssuers,
        ...streams,
      }),
    ).toBe(0);
    const token = streams.out.join("").trim();
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ sub: "billing", kind: "service", roles: ["admin", "ops"] });
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(60);
    const authenticator = createAuthenticator({ issuers: [], localKey: await loadOrCreateLocalSigningKey(dir), logger: silent });
    expect((await authenticator.authenticate(`Bearer ${token}`)).kind).toBe("admin");
  });

  it("refuses (exit 2) when trusted issuers are configured, and creates no key", async () => {
    const issuer: JwtIssuerConfig = {
      name: "company-idp",
      issuer: "https://idp.example",
      audiences: ["oauth-broker"],
      jwksUrl: "https://idp.example/jwks",
      staticKeys: [],
      algorithms: ["RS256"],
      clockSkewSeconds: 30,
      maxTokenLifetimeSeconds: 86_400,
      principalKind: "service",
      rolesClaim: "roles",
    allowAdmin: false,
      subjectClaim: "sub",
    };
    const streams = io();
    const code = await runTokenCommand(["--user", "alice"], {
      config: () => ({ dataDir: dir, auth: { issuers: [issuer], protectMetrics: false } }),
      ...streams,
    });
    expect(code).toBe(2);
    expect(streams.out).toEqual([]);
    expect(streams.err.join("")).toContain("trusted issuers are configured (company-idp)");
    expect(await readdir(dir)).toEqual([]);
  });

  it("refuses bad usage with exit 2", async () => {
    for (const argv of [[], ["--user", "a", "--service", "b"], ["--user", ""], ["--user", "a", "--ttl", "0"], ["--user", "a", "--ttl", "x"], ["--user", "a", "--ttl", "999999"], ["--bogus"], ["alice"]]) {
      const streams = io();
      expect(await runTokenCommand(argv, { config: noIssuers, ...streams }), argv.join(" ")).toBe(2);
      expect(streams.out).toEqual([]);
      expect(streams.err.join("")).not.toBe("");
    }
    expect(await readdir(dir)).toEqual([]);
  });

  it("prints usage for --help", async () => {
    const streams = io();
    expect(await runTokenCommand(["--help"], { config: noIssuers, ...streams })).toBe(0);
    expect(streams.out.join("")).toContain("usage: npm run token");
  });
});
