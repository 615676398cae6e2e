import { describe, it, expect, beforeAll } from "vitest";
import { generateKeyPair, exportJWK, exportSPKI, SignJWT, UnsecuredJWT, type CryptoKey, type JWK } from "jose";
import { authFailureReason, createAuthenticator, type Authenticator } from "../../src/auth/authenticator.js";
import { LOCAL_AUDIENCE, LOCAL_ISSUER, signLocalToken, type LocalSigningKey } from "../../src/auth/local-signing-key.js";
import type { JwtIssuerConfig } from "../../src/config/types.js";
import { BrokerError } from "../../src/domain/errors.js";
import { captureLogger } from "../support/log-capture.js";

const NOW = new Date("2030-01-01T00:00:00Z");
const NOW_S = Math.floor(NOW.getTime() / 1000);
const clock = { now: () => NOW };
const ISS = "https://idp.example";

function issuerConfig(overrides: Partial<JwtIssuerConfig> = {}): JwtIssuerConfig {
  return {
    name: "idp",
    issuer: ISS,
    audiences: ["oauth-broker"],
    jwksUrl: undefined,
    staticKeys: [],
    algorithms: ["RS256", "ES256"],
    clockSkewSeconds: 30,
    maxTokenLifetimeSeconds: 86_400,
    principalKind: "service",
    rolesClaim: "roles",
    allowAdmin: true,
    subjectClaim: "sub",
    ...overrides,
  };
}

interface Keys {
  privateKey: CryptoKey;
  publicJwk: JWK;
  pem: string;
}

async function rsaKeys(): Promise<Keys> {
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  return { privateKey, publicJwk: await exportJWK(publicKey), pem: await exportSPKI(publicKey) };
}

function sign(
  key: CryptoKey | Uint8Array,
  claims: Record<string, unknown> = {},
  options: { alg?: string; kid?: string; iss?: string; aud?: string; sub?: string; exp?: number | null; nbf?: number; iat?: number | null } = {},
): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? "RS256", ...(options.kid ? { kid: options.kid } : {}) })
    .setIssuer(options.iss ?? ISS)
    .setAudience(options.aud ?? "oauth-broker");
  if (options.iat !== null) jwt.setIssuedAt(options.iat ?? NOW_S - 10);
  if (options.sub !== "") jwt.setSubject(options.sub ?? "billing");
  if (options.exp !== null) jwt.setExpirationTime(options.exp ?? NOW_S + 300);
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  return jwt.sign(key);
}

async function expectRejected(authenticator: Authenticator, header: string | null): Promise<BrokerError> {
  const error = await authenticator.authenticate(header).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(BrokerError);
  const brokerError = error as BrokerError;
  expect(brokerError.code).toBe("unauthenticated");
  // The caller never learns which check failed.
  expect(brokerError.message).toBe("missing or invalid credentials");
  return brokerError;
}

describe("authenticator with static keys", () => {
  let keys: Keys;
  let other: Keys;
  beforeAll(async () => {
    keys = await rsaKeys();
    other = await rsaKeys();
  });

  function make(overrides: Partial<JwtIssuerConfig> = {}) {
    const { log, logger } = captureLogger();
    const authenticator = createAuthenticator({
      issuers: [issuerConfig({ staticKeys: [JSON.stringify(keys.publicJwk)], ...overrides })],
      logger,
      clock,
    });
    return { authenticator, log };
  }

  it("accepts a valid token as a service principal named after the issuer config", async () => {
    const { authenticator } = make();
    const principal = await authenticator.authenticate(`Bearer ${await sign(keys.privateKey)}`);
    expect(principal).toEqual({ kind: "service", subject: "billing", issuer: "idp" });
  });

  it("accepts the scheme case-insensitively (RFC 7235 §2.1)", async () => {
    const { authenticator } = make();
    const principal = await authenticator.authenticate(`bearer ${await sign(keys.privateKey)}`);
    expect(principal.subject).toBe("billing");
  });

  it("accepts a PEM (SPKI) static key", async () => {
    const { authenticator } = make({ staticKeys: [keys.pem] });
    await expect(authenticator.authenticate(`Bearer ${await sign(keys.privateKey)}`)).resolves.toMatchObject({
      subject: "billing",
    });
  });

  it("accepts a JWK Set and tries every key when several match (no kid)", async () => {
    const { authenticator } = make({
      staticKeys: [JSON.stringify({ keys: [other.publicJwk, keys.publicJwk] })],
    });
    await expect(authenticator.authenticate(`Bearer ${await sign(keys.privateKey)}`)).resolves.toMatchObject({
      subject: "billing",
    });
  });

  it("selects the key by kid", async () => {
    const { authenticator } = make({
      staticKeys: [JSON.stringify({ ...other.publicJwk, kid: "a" }), JSON.stringify({ ...keys.publicJwk, kid: "b" })],
    });
    await expect(authenticator.authenticate(`Bearer ${await sign(keys.privateKey, {}, { kid: "b" })}`)).resolves.toBeTruthy();
    // A token naming the other key's kid does not verify against it.
    await expectRejected(authenticator, `Bearer ${await sign(keys.privateKey, {}, { kid: "a" })}`);
  });

  it("maps the admin role, in an array or a space-separated string, to an admin principal", async () => {
    const { authenticator } = make();
    expect((await authenticator.authenticate(`Bearer ${await sign(keys.privateKey, { roles: ["reader", "admin"] })}`)).kind).toBe(
      "admin",
    );
    expect((await authenticator.authenticate(`Bearer ${await sign(keys.privateKey, { roles: "reader admin" })}`)).kind).toBe(
      "admin",
    );
    expect((await authenticator.authenticate(`Bearer ${await sign(keys.privateKey, { roles: ["administrator"] })}`)).kind).toBe(
      "service",
    );
  });

  it("reads nested and namespaced role and subject claims", async () => {
    const { authenticator } = make({ rolesClaim: "realm_access.roles", subjectClaim: "https://example.com/uid" });
    const token = await sign(keys.privateKey, { realm_access: { roles: ["admin"] }, "https://example.com/uid": "u-7" });
    expect(await authenticator.authenticate(`Bearer ${token}`)).toEqual({ kind: "admin", subject: "u-7", issuer: "idp" });
  });

  it("makes no admin from an issuer that may not grant it", async () => {
    const { authenticator } = make({ principalKind: "user", allowAdmin: false });
    const token = await sign(keys.privateKey, { roles: ["admin"] }, { sub: "app-admin" });
    expect(await authenticator.authenticate(`Bearer ${token}`)).toEqual({ kind: "user", subject: "app-admin", issuer: "idp" });
  });

  it("describes users for a user issuer", async () => {
    const { authenticator } = make({ principalKind: "user" });
    expect((await authenticator.authenticate(`Bearer ${await sign(keys.privateKey, {}, { sub: "alice" })}`)).kind).toBe("user");
  });

  it("honours the clock skew on exp and nbf", async () => {
    const { authenticator } = make();
    await expect(authenticator.authenticate(`Bearer ${await sign(keys.privateKey, {}, { exp: NOW_S - 20 })}`)).resolves.toBeTruthy();
    await expect(authenticator.authenticate(`Bearer ${await sign(keys.privateKey, {}, { nbf: NOW_S + 20 })}`)).resolves.toBeTruthy();
  });

  describe("refuses forgeries and broken tokens", () => {
    it("a missing header, an empty one, another scheme, garbage", async () => {
      const { authenticator } = make();
      await expectRejected(authenticator, null);
      await expectRejected(authenticator, "");
      await expectRejected(authenticator, "Bearer");
      await expectRejected(authenticator, `Basic ${Buffer.from("a:b").toString("base64")}`);
      await expectRejected(authenticator, "Bearer not-a-jwt");
      await expectRejected(authenticator, "Bearer a.b.c");
      await expectRejected(authenticator, `Bearer ${"x".repeat(20_000)}`);
    });

    it("alg none, even when the payload is otherwise perfect", async () => {
      const { authenticator, log } = make();
      const token = new UnsecuredJWT({ sub: "billing" })
        .setIssuer(ISS)
        .setAudience("oauth-broker")
        .setExpirationTime(NOW_S + 300)
        .encode();
      await expectRejected(authenticator, `Bearer ${token}`);
      expect(log.text()).toContain('algorithm \\"none\\" is never accepted');
    });

    it("HS256 signed with the public key's bytes (PEM or JWK), even if HS256 is configured", async () => {
      const { authenticator } = make({ staticKeys: [keys.pem], algorithms: ["RS256", "HS256"] });
      const withPem = await sign(new TextEncoder().encode(keys.pem), {}, { alg: "HS256" });
      const withJwk = await sign(new TextEncoder().encode(JSON.stringify(keys.publicJwk)), {}, { alg: "HS256" });
      await expectRejected(authenticator, `Bearer ${withPem}`);
      await expectRejected(authenticator, `Bearer ${withJwk}`);
    });

    it("a token signed by another key", async () => {
      const { authenticator } = make();
      await expectRejected(authenticator, `Bearer ${await sign(other.privateKey)}`);
    });

    it("a tampered payload", async () => {
      const { authenticator } = make();
      const [header, , signature] = (await sign(keys.privateKey, { roles: [] })).split(".");
      const payload = Buffer.from(
        JSON.stringify({ iss: ISS, aud: "oauth-broker", sub: "billing", exp: NOW_S + 300, roles: ["admin"] }),
      ).toString("base64url");
      await expectRejected(authenticator, `Bearer ${header}.${payload}.${signature}`);
    });

    it("an unknown issuer, and a known key presented under another iss", async () => {
      const { authenticator, log } = make();
      await expectRejected(authenticator, `Bearer ${await sign(keys.privateKey, {}, { iss: "https://evil.example" })}`);
      expect(log.text()).toContain("untrusted issuer");
    });

    it("a wrong audience", async () => {
      const { authenticator } = make();
      await expectRejected(authenticator, `Bearer ${await sign(keys.privateKey, {}, { aud: "another-service" })}`);
    });

    it("expired beyond the clock skew", async () => {
      const { authenticator, log } = make();
      await expectRejected(authenticator, `Bearer ${await sign(keys.privateKey, {}, { exp: NOW_S - 31 })}`);
      expect(log.text()).toContain("ERR_JWT_EXPIRED");
    });

    it("not yet valid beyond the clock skew (future nbf)", async () => {
      const { authenticator } = make();
      await expectRejected(authenticator, `Bearer ${await sign(keys.privateKey, {}, { nbf: NOW_S + 31 })}`);
    });

    it("a token without exp, or without a subject", async () => {
      const { authenticator } = make();
      await expectRejected(authenticator, `Bearer ${await sign(keys.privateKey, {}, { exp: null })}`);
      await expectRejected(authenticator, `Bearer ${await sign(keys.privateKey, {}, { sub: "" })}`);
    });

    it("a lifetime beyond the issuer's bound: exp − iat, or exp − now without iat; the reason is logged", async () => {
      const { authenticator, log } = make();
      const tenYears = 10 * 365 * 86_400;
      const rejected = await expectRejected(authenticator, `Bearer ${await sign(keys.privateKey, {}, { exp: NOW_S + tenYears })}`);
      expect(authFailureReason(rejected)).toBe("lifetime_too_long");
      expect(log.text()).toMatch(/exp - iat = \d+ s exceeds the issuer's 86400 s/);
      // Issued a day ago and valid for one more second: the lifetime, not what is left, counts.
      const old = await sign(keys.privateKey, {}, { iat: NOW_S - 86_400, exp: NOW_S + 1 });
      expect(authFailureReason(await expectRejected(authenticator, `Bearer ${old}`))).toBe("lifetime_too_long");
      const noIat = await sign(keys.privateKey, {}, { iat: null, exp: NOW_S + 86_400 + 31 });
      expect(authFailureReason(await expectRejected(authenticator, `Bearer ${noIat}`))).toBe("lifetime_too_long");
      expect(log.text()).toMatch(/token without iat expires in \d+ s, beyond the issuer's 86400 s/);
    });

    it("a future iat cannot shorten the measured lifetime: issued beyond the skew is refused, the lifetime counts from min(iat, now)", async () => {
      const { authenticator, log } = make();
      const exp = NOW_S + 10 * 365 * 86_400;
      const futureIat = await sign(keys.privateKey, {}, { iat: exp - 60, exp });
      expect(authFailureReason(await expectRejected(authenticator, `Bearer ${futureIat}`))).toBe("not_yet_valid");
      expect(log.text()).toMatch(/token issued \d+ s in the future, beyond the 30 s clock skew/);
      // Just beyond the skew, even with a short lifetime.
      const justAhead = await sign(keys.privateKey, {}, { iat: NOW_S + 31, exp: NOW_S + 300 });
      expect(authFailureReason(await expectRejected(authenticator, `Bearer ${justAhead}`))).toBe("not_yet_valid");
      // Within the skew ahead, the bound still holds on exp − iat.
      const aheadTooLong = await sign(keys.privateKey, {}, { iat: NOW_S + 20, exp: NOW_S + 20 + 86_401 });
      expect(authFailureReason(await expectRejected(authenticator, `Bearer ${aheadTooLong}`))).toBe("lifetime_too_long");
    });

    it("an algorithm the issuer does not allow", async () => {
      const ec = await generateKeyPair("ES256", { extractable: true });
      const { authenticator } = make({ staticKeys: [JSON.stringify(await exportJWK(ec.publicKey))], algorithms: ["RS256"] });
      await expectRejected(authenticator, `Bearer ${await sign(ec.privateKey, {}, { alg: "ES256" })}`);
    });

    it("never logs the token, and logs the specific reason", async () => {
      const { authenticator, log } = make();
      const token = await sign(other.privateKey);
      await expectRejected(authenticator, `Bearer ${token}`);
      const text = log.text();
      expect(text).not.toContain(token);
      expect(text).not.toContain(token.split(".")[2]);
      expect(text).toContain("authentication failed");
      expect(text).toContain("signature verification failed");
    });
  });

  it("accepts a lifetime up to the bound, and up to a bound configured higher", async () => {
    const { authenticator } = make();
    await expect(authenticator.authenticate(`Bearer ${await sign(keys.privateKey, {}, { iat: NOW_S - 10, exp: NOW_S - 10 + 86_400 })}`)).resolves.toBeTruthy();
    await expect(authenticator.authenticate(`Bearer ${await sign(keys.privateKey, {}, { iat: null, exp: NOW_S + 86_400 + 30 })}`)).resolves.toBeTruthy();
    // An iat a little ahead of the broker's clock (within the skew) is a clock difference, not an attack.
    await expect(authenticator.authenticate(`Bearer ${await sign(keys.privateKey, {}, { iat: NOW_S + 20, exp: NOW_S + 20 + 86_400 })}`)).resolves.toBeTruthy();
    const { authenticator: lenient } = make({ maxTokenLifetimeSeconds: 7 * 86_400 });
    await expect(lenient.authenticate(`Bearer ${await sign(keys.privateKey, {}, { exp: NOW_S + 6 * 86_400 })}`)).resolves.toBeTruthy();
  });

  it("answers at once only for a token verified and then confirmed by its fixed key set, until it expires or the authenticator closes", async () => {
    const { log, logger } = captureLogger();
    let now = NOW;
    const authenticator = createAuthenticator({
      issuers: [issuerConfig({ staticKeys: [JSON.stringify(keys.publicJwk)] })],
      logger,
      clock: { now: () => now },
    });
    const header = `Bearer ${await sign(keys.privateKey, {}, { exp: NOW_S + 60 })}`;
    expect(authenticator.authenticateWarm(header)).toBeUndefined();
    const principal = await authenticator.authenticate(header);
    // Verified, not yet confirmed by the key resolver on a later call.
    expect(authenticator.authenticateWarm(header)).toBeUndefined();
    await authenticator.authenticate(header);
    expect(authenticator.authenticateWarm(header)).toBe(principal);
    // Anything it cannot answer at once is authenticate's, which logs the failure; this logs nothing.
    expect(authenticator.authenticateWarm(null)).toBeUndefined();
    expect(authenticator.authenticateWarm("Basic abc")).toBeUndefined();
    expect(authenticator.authenticateWarm(`Bearer ${await sign(other.privateKey, {}, { exp: NOW_S + 60 })}`)).toBeUndefined();
    expect(log.lines).toHaveLength(0);
    now = new Date((NOW_S + 60) * 1000);
    expect(authenticator.authenticateWarm(header)).toBeUndefined();
    now = NOW;
    // The expired entry is gone: verified and confirmed again before it answers at once.
    await authenticator.authenticate(header);
    expect(authenticator.authenticateWarm(header)).toBeUndefined();
    await authenticator.authenticate(header);
    expect(authenticator.authenticateWarm(header)).toEqual(principal);
    authenticator.close();
    expect(authenticator.authenticateWarm(header)).toBeUndefined();
  });

  it("answers a second ask for the same call from that call's first answer, while it has not expired", async () => {
    const { logger } = captureLogger();
    let now = NOW;
    const authenticator = createAuthenticator({
      issuers: [issuerConfig({ staticKeys: [JSON.stringify(keys.publicJwk)] })],
      logger,
      clock: { now: () => now },
      // One entry: verifying a second token evicts the first from the cache.
      verifiedCacheMaxEntries: 1,
    });
    const header = `Bearer ${await sign(keys.privateKey, {}, { exp: NOW_S + 60 })}`;
    const otherHeader = `Bearer ${await sign(keys.privateKey, {}, { sub: "someone-else", exp: NOW_S + 60 })}`;
    await authenticator.authenticate(header);
    const principal = await authenticator.authenticate(header);
    const call = {};
    expect(authenticator.authenticateWarm(header, call)).toBe(principal);
    await authenticator.authenticate(otherHeader);
    await authenticator.authenticate(otherHeader);
    // Evicted from the cache: only the call that was answered before is answered again.
    expect(authenticator.authenticateWarm(header)).toBeUndefined();
    expect(authenticator.authenticateWarm(header, {})).toBeUndefined();
    expect(authenticator.authenticateWarm(header, call)).toBe(principal);
    // The call's answer is for its own header only.
    expect(authenticator.authenticateWarm(otherHeader, call)?.subject).toBe("someone-else");
    const expiring = {};
    expect(authenticator.authenticateWarm(otherHeader, expiring)?.subject).toBe("someone-else");
    now = new Date((NOW_S + 60) * 1000);
    expect(authenticator.authenticateWarm(otherHeader, expiring)).toBeUndefined();
    authenticator.close();
  });

  it("refuses every call once closed", async () => {
    const { authenticator } = make();
    const token = await sign(keys.privateKey);
    authenticator.close();
    await expectRejected(authenticator, `Bearer ${token}`);
  });

  it("refuses unusable issuer configurations at creation", () => {
    const { logger } = captureLogger();
    const build = (config: Partial<JwtIssuerConfig>) => () =>
      createAuthenticator({ issuers: [issuerConfig({ staticKeys: [JSON.stringify(keys.publicJwk)], ...config })], logger });
    expect(build({ algorithms: ["HS256"] })).toThrow(/accepted asymmetric algorithm/);
    expect(build({ audiences: [] })).toThrow(/audience/);
    expect(build({ staticKeys: [] })).toThrow(/JWKS URL or static keys/);
    expect(build({ staticKeys: [JSON.stringify({ kty: "oct", k: "c2VjcmV0" })] })).toThrow(/only public keys/);
    expect(build({ staticKeys: ["not a key"] })).toThrow(/neither a JWK nor/);
    expect(() =>
      createAuthenticator({
        issuers: [
          issuerConfig({ staticKeys: [keys.pem] }),
          issuerConfig({ name: "again", staticKeys: [keys.pem] }),
        ],
        logger,
      }),
    ).toThrow(/configured twice/);
    expect(() => createAuthenticator({ issuers: [], logger })).toThrow(/no trusted issuer/);
  });
});

describe("authenticator on the embedded default (local key)", () => {
  let local: LocalSigningKey;
  let stranger: LocalSigningKey;
  beforeAll(async () => {
    const makeKey = async (kid: string): Promise<LocalSigningKey> => {
      const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
      return { privateKey, publicJwk: await exportJWK(publicKey), kid, issuer: LOCAL_ISSUER, audience: LOCAL_AUDIENCE };
    };
    local = await makeKey("local-1");
    stranger = await makeKey("local-1");
  });

  function make() {
    const { logger } = captureLogger();
    return createAuthenticator({ issuers: [], localKey: local, logger, clock });
  }

  it("accepts user, service and admin tokens it signed", async () => {
    const authenticator = make();
    const user = await signLocalToken(local, { subject: "alice", kind: "user", now: NOW });
    const service = await signLocalToken(local, { subject: "billing", kind: "service", now: NOW });
    const admin = await signLocalToken(local, { subject: "ops", kind: "user", roles: ["admin"], now: NOW });
    expect(await authenticator.authenticate(`Bearer ${user}`)).toEqual({ kind: "user", subject: "alice", issuer: "local" });
    expect(await authenticator.authenticate(`Bearer ${service}`)).toEqual({
      kind: "service",
      subject: "billing",
      issuer: "local",
    });
    expect((await authenticator.authenticate(`Bearer ${admin}`)).kind).toBe("admin");
  });

  it("refuses an expired local token and one signed by another local key with the same kid", async () => {
    const authenticator = make();
    const expired = await signLocalToken(local, { subject: "alice", kind: "user", ttlSeconds: 60, now: new Date(NOW.getTime() - 3_600_000) });
    await expectRejected(authenticator, `Bearer ${expired}`);
    const forged = await signLocalToken(stranger, { subject: "alice", kind: "user", now: NOW });
    await expectRejected(authenticator, `Bearer ${forged}`);
  });

  it("accepts the longest local token `npm run token` mints, and refuses a longer one", async () => {
    const authenticator = make();
    const day = await signLocalToken(local, { subject: "alice", kind: "user", ttlSeconds: 86_400, now: NOW });
    expect((await authenticator.authenticate(`Bearer ${day}`)).subject).toBe("alice");
    const tenYears = await signLocalToken(local, { subject: "alice", kind: "user", ttlSeconds: 10 * 365 * 86_400, now: NOW });
    expect(authFailureReason(await expectRejected(authenticator, `Bearer ${tenYears}`))).toBe("lifetime_too_long");
  });

  it("refuses a local token without a valid kind claim", async () => {
    const authenticator = make();
    const token = await new SignJWT({ kind: "robot" })
      .setProtectedHeader({ alg: "EdDSA", kid: local.kid })
      .setIssuer(LOCAL_ISSUER)
      .setAudience(LOCAL_AUDIENCE)
      .setSubject("alice")
      .setExpirationTime(NOW_S + 60)
      .sign(local.privateKey);
    await expectRejected(authenticator, `Bearer ${token}`);
  });

  it("does not trust the local key once issuers are configured", async () => {
    const rsa = await rsaKeys();
    const { logger } = captureLogger();
    const authenticator = createAuthenticator({
      issuers: [issuerConfig({ staticKeys: [rsa.pem] })],
      localKey: local,
      logger,
      clock,
    });
    await expectRejected(authenticator, `Bearer ${await signLocalToken(local, { subject: "alice", kind: "user", now: NOW })}`);
  });

  it("refuses to mint a token with a non-positive lifetime or an empty subject", async () => {
    await expect(signLocalToken(local, { subject: "alice", kind: "user", ttlSeconds: 0 })).rejects.toThrow(/ttlSeconds/);
    await expect(signLocalToken(local, { subject: "", kind: "user" })).rejects.toThrow(/subject/);
  });
});
