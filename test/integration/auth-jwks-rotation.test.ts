import { describe, it, expect, beforeAll, afterAll, afterEach, vi } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { generateKeyPair, exportJWK, SignJWT, type CryptoKey, type JWK } from "jose";
import { createAuthenticator, type JwksOptions } from "../../src/auth/authenticator.js";
import type { JwtIssuerConfig } from "../../src/config/types.js";
import { BrokerError } from "../../src/domain/errors.js";
import { captureLogger } from "../support/log-capture.js";

const ISS = "https://idp.test";

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function signingKey(kid: string, alg: "RS256" | "ES256" = "RS256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

function tokenFor(key: SigningKey, subject = "billing"): Promise<string> {
  return new SignJWT({ roles: [] })
    .setProtectedHeader({ alg: key.publicJwk.alg ?? "RS256", kid: key.kid })
    .setIssuer(ISS)
    .setAudience("oauth-broker")
    .setSubject(subject)
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(key.privateKey);
}

let server: Server;
let jwksUrl: string;
let served: JWK[] = [];
let status = 200;
let fetches = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url !== "/jwks") {
      res.writeHead(404).end();
      return;
    }
    fetches++;
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ keys: served }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function make(jwks: JwksOptions) {
  const { logger, log } = captureLogger();
  const issuer: JwtIssuerConfig = {
    name: "idp",
    issuer: ISS,
    audiences: ["oauth-broker"],
    jwksUrl,
    staticKeys: [],
    algorithms: ["RS256", "ES256"],
    clockSkewSeconds: 30,
    maxTokenLifetimeSeconds: 86_400,
    principalKind: "service",
    rolesClaim: "roles",
    allowAdmin: false,
    subjectClaim: "sub",
  };
  return { authenticator: createAuthenticator({ issuers: [issuer], logger, jwks }), log };
}

async function rejected(promise: Promise<unknown>): Promise<BrokerError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(BrokerError);
  expect((error as BrokerError).code).toBe("unauthenticated");
  return error as BrokerError;
}

/**
 * The JWKS cache and its cooldown are jose's, timed by `Date.now()`: only Date is faked, so the
 * HTTP fetches and their timeouts run on real timers while the cache's time moves only when a
 * test moves it. Durations are then the defaults, not ones short enough to wait out.
 */
function cacheClock(): { advance(ms: number): void } {
  vi.useFakeTimers({ toFake: ["Date"], now: Date.now() });
  return { advance: (ms) => vi.setSystemTime(Date.now() + ms) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("JWKS from a URL", () => {
  it("accepts a new key after a rotation (refetch on unknown kid) and refuses the removed one", async () => {
    const a = await signingKey("a");
    const b = await signingKey("b", "ES256");
    served = [a.publicJwk];
    status = 200;
    fetches = 0;
    const { authenticator } = make({ cooldownMs: 0 });

    const tokenA = await tokenFor(a);
    expect(await authenticator.authenticate(`Bearer ${tokenA}`)).toEqual({ kind: "service", subject: "billing", issuer: "idp" });
    expect(await authenticator.authenticate(`Bearer ${tokenA}`)).toMatchObject({ subject: "billing" });
    expect(fetches).toBe(1); // cached

    served = [b.publicJwk]; // rotation mid-run: a removed, b added
    expect(await authenticator.authenticate(`Bearer ${await tokenFor(b, "reporting")}`)).toMatchObject({ subject: "reporting" });
    expect(fetches).toBe(2);
    await rejected(authenticator.authenticate(`Bearer ${tokenA}`));
    authenticator.close();
  });

  it("re-fetches for an unknown kid only after the cooldown", async () => {
    const a = await signingKey("a");
    const b = await signingKey("b");
    served = [a.publicJwk];
    status = 200;
    fetches = 0;
    const clock = cacheClock();
    const { authenticator } = make({ cooldownMs: 30_000 });
    await authenticator.authenticate(`Bearer ${await tokenFor(a)}`);
    served = [a.publicJwk, b.publicJwk];
    const tokenB = await tokenFor(b);
    // Within the cooldown an unknown kid does not hammer the IdP: refused without a fetch.
    await rejected(authenticator.authenticate(`Bearer ${tokenB}`));
    clock.advance(29_000);
    await rejected(authenticator.authenticate(`Bearer ${tokenB}`));
    expect(fetches).toBe(1);
    clock.advance(2_000);
    expect(await authenticator.authenticate(`Bearer ${tokenB}`)).toMatchObject({ subject: "billing" });
    expect(fetches).toBe(2);
  });

  it("drops a removed key once the cache is older than its max age", async () => {
    const a = await signingKey("a");
    const b = await signingKey("b");
    served = [a.publicJwk, b.publicJwk];
    status = 200;
    fetches = 0;
    const clock = cacheClock();
    const { authenticator } = make({ cacheMaxAgeMs: 600_000, cooldownMs: 0 });
    const tokenA = await tokenFor(a);
    await authenticator.authenticate(`Bearer ${tokenA}`);
    served = [b.publicJwk];
    // Tokens are kept verified for their lifetime (5 min here): a fresh one, as a caller would send.
    clock.advance(601_000);
    const laterTokenA = await tokenFor(a);
    await rejected(authenticator.authenticate(`Bearer ${laterTokenA}`));
    // The stale set was fetched again (and, the kid being unknown, perhaps once more).
    expect(fetches).toBeGreaterThanOrEqual(2);
    expect(await authenticator.authenticate(`Bearer ${await tokenFor(b)}`)).toMatchObject({ subject: "billing" });
  });

  it("answers unauthenticated, and logs why, when the JWKS cannot be fetched", async () => {
    const a = await signingKey("a");
    served = [a.publicJwk];
    status = 503;
    const { authenticator, log } = make({ cooldownMs: 0 });
    const token = await tokenFor(a);
    await rejected(authenticator.authenticate(`Bearer ${token}`));
    expect(log.text()).toContain("authentication failed");
    expect(log.text()).toContain("ERR_JOSE_GENERIC");
    expect(log.text()).not.toContain(token);
    status = 200;
  });
});
