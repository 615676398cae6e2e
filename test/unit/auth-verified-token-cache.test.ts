/**
 * The authenticator's cache of verified tokens (verified-token-cache.ts): a repeated token skips
 * the signature check, but never past its `exp`, never for a token that was refused, and within a
 * bound. Key rotation through a JWKS URL is pinned by test/integration/auth-jwks-rotation.test.ts.
 */
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { generateKeyPair, exportJWK, SignJWT, type CryptoKey, type JWK } from "jose";
import { createAuthenticator } from "../../src/auth/authenticator.js";
import type { JwtIssuerConfig } from "../../src/config/types.js";
import { BrokerError } from "../../src/domain/errors.js";
import { createLogger } from "../../src/observability/logger.js";
import { manualClock } from "../support/manual-clock.js";

const NOW_S = Math.floor(new Date("2030-01-01T00:00:00Z").getTime() / 1000);
const ISS = "https://idp.example";
const SKEW = 30;

let privateKey: CryptoKey;
let publicJwk: JWK;

beforeAll(async () => {
  const pair = await generateKeyPair("ES256", { extractable: true });
  privateKey = pair.privateKey;
  publicJwk = await exportJWK(pair.publicKey);
});

afterEach(() => {
  vi.restoreAllMocks();
});

function issuer(): JwtIssuerConfig {
  return {
    name: "idp",
    issuer: ISS,
    audiences: ["oauth-broker"],
    jwksUrl: undefined,
    staticKeys: [JSON.stringify(publicJwk)],
    algorithms: ["ES256"],
    clockSkewSeconds: SKEW,
    maxTokenLifetimeSeconds: 86_400,
    principalKind: "service",
    rolesClaim: "roles",
    allowAdmin: false,
    subjectClaim: "sub",
  };
}

function sign(subject: string, times: { exp?: number; nbf?: number } = {}): Promise<string> {
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg: "ES256" })
    .setIssuer(ISS)
    .setAudience("oauth-broker")
    .setSubject(subject)
    .setIssuedAt(NOW_S - 10)
    .setExpirationTime(times.exp ?? NOW_S + 300);
  if (times.nbf !== undefined) jwt.setNotBefore(times.nbf);
  return jwt.sign(privateKey);
}

function setup(verifiedCacheMaxEntries?: number) {
  const clock = manualClock(NOW_S * 1000);
  const authenticator = createAuthenticator({
    issuers: [issuer()],
    logger: createLogger({ level: "silent" }),
    clock,
    verifiedCacheMaxEntries,
  });
  const verifications = vi.spyOn(globalThis.crypto.subtle, "verify");
  return {
    authenticator,
    verifications,
    at(seconds: number) {
      clock.advance(seconds * 1000 - clock.nowMs());
    },
  };
}

async function refused(promise: Promise<unknown>): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(BrokerError);
  expect((error as BrokerError).code).toBe("unauthenticated");
}

describe("verified-token cache", () => {
  it("checks a repeated token's signature once", async () => {
    const { authenticator, verifications } = setup();
    const header = `Bearer ${await sign("billing")}`;
    for (let i = 0; i < 5; i++) expect(await authenticator.authenticate(header)).toEqual({ kind: "service", subject: "billing", issuer: "idp" });
    expect(verifications).toHaveBeenCalledTimes(1);
  });

  it("verifies every call when the cache is off", async () => {
    const { authenticator, verifications } = setup(0);
    const header = `Bearer ${await sign("billing")}`;
    for (let i = 0; i < 3; i++) await authenticator.authenticate(header);
    expect(verifications).toHaveBeenCalledTimes(3);
  });

  it("serves no token past its exp: the full check applies again, skew allowance and then refusal", async () => {
    const { authenticator, verifications, at } = setup();
    const header = `Bearer ${await sign("billing", { exp: NOW_S + 60 })}`;
    await authenticator.authenticate(header);
    at(NOW_S + 61);
    // Within the clock-skew allowance: accepted, but only after a fresh verification.
    await authenticator.authenticate(header);
    expect(verifications).toHaveBeenCalledTimes(2);
    at(NOW_S + 60 + SKEW + 1);
    await refused(authenticator.authenticate(header));
  });

  it("never caches a refusal", async () => {
    const { authenticator, at } = setup();
    const header = `Bearer ${await sign("billing", { nbf: NOW_S + 120 })}`;
    await refused(authenticator.authenticate(header));
    at(NOW_S + 120);
    expect(await authenticator.authenticate(header)).toMatchObject({ subject: "billing" });
  });

  it("keeps at most the configured number of tokens, dropping the oldest", async () => {
    const { authenticator, verifications } = setup(2);
    const headers = await Promise.all(["a", "b", "c"].map(async (subject) => `Bearer ${await sign(subject)}`));
    for (const header of headers) await authenticator.authenticate(header);
    expect(verifications).toHaveBeenCalledTimes(3);
    await authenticator.authenticate(headers[2] ?? "");
    expect(verifications).toHaveBeenCalledTimes(3);
    await authenticator.authenticate(headers[0] ?? "");
    expect(verifications).toHaveBeenCalledTimes(4);
  });

  it("still refuses a different token for the same subject signed by an unknown key", async () => {
    const { authenticator } = setup();
    await authenticator.authenticate(`Bearer ${await sign("billing")}`);
    const stranger = await generateKeyPair("ES256");
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256" })
      .setIssuer(ISS)
      .setAudience("oauth-broker")
      .setSubject("billing")
      .setExpirationTime(NOW_S + 300)
      .sign(stranger.privateKey);
    await refused(authenticator.authenticate(`Bearer ${forged}`));
  });
});
