/** One-time authorization sessions against real PostgreSQL. */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBrokerError } from "../../src/domain/errors.js";
import type { AuthorizationSession } from "../../src/domain/types.js";
import { createSessionRepository } from "../../src/storage/session-repository.js";
import { createTestDatabase, type TestDatabase } from "../support/database.js";

let db: TestDatabase;
let sessions: ReturnType<typeof createSessionRepository>;
beforeAll(async () => {
  db = await createTestDatabase();
  sessions = createSessionRepository(db.sql);
});
afterAll(async () => {
  await db?.drop();
});

function session(expiresInMs = 600_000): AuthorizationSession & { stateHash: string } {
  const now = new Date();
  return {
    id: randomUUID(),
    stateHash: `hash-${randomUUID()}`,
    userId: "alice",
    provider: "google",
    requestedScopes: ["openid", "email"],
    returnTo: "http://127.0.0.1:8080/done",
    codeVerifierCiphertext: "local:v1:verifier",
    nonce: "nonce-1",
    createdAt: now,
    expiresAt: new Date(now.getTime() + expiresInMs),
  };
}

describe("session repository", () => {
  it("returns the stored session once, mapped back to the domain type", async () => {
    const stored = session();
    await sessions.create(stored);
    const { stateHash: _hash, ...expected } = stored;
    expect(await sessions.consume(stored.stateHash)).toEqual(expected);
    expect(await sessions.consume(stored.stateHash)).toBeUndefined();
    expect(await sessions.consume("never-stored")).toBeUndefined();
  });

  it("hands a session to exactly one of many concurrent callers", async () => {
    const stored = session();
    await sessions.create(stored);
    const results = await Promise.all(Array.from({ length: 8 }, () => sessions.consume(stored.stateHash)));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(results.find(Boolean)?.id).toBe(stored.id);
  });

  it("uses up an expired session too (the caller checks expiry)", async () => {
    const stored = session(-1_000);
    await sessions.create(stored);
    expect((await sessions.consume(stored.stateHash))?.expiresAt.getTime()).toBeLessThan(Date.now());
    expect(await sessions.consume(stored.stateHash)).toBeUndefined();
  });

  it("keeps nullable fields null", async () => {
    const stored = { ...session(), codeVerifierCiphertext: null, nonce: null, requestedScopes: [] };
    await sessions.create(stored);
    expect(await sessions.consume(stored.stateHash)).toMatchObject({ codeVerifierCiphertext: null, nonce: null, requestedScopes: [] });
  });

  it("refuses a second session with the same state hash", async () => {
    const stored = session();
    await sessions.create(stored);
    const failure = await sessions.create({ ...session(), stateHash: stored.stateHash }).catch((e: unknown) => e);
    expect(isBrokerError(failure, "already_exists")).toBe(true);
  });

  it("purges only expired sessions, at most `limit` at a time", async () => {
    await db.sql`delete from authorization_sessions`;
    const expired = [session(-60_000), session(-30_000), session(-10_000)];
    const live = session();
    for (const s of [...expired, live]) await sessions.create(s);
    expect(await sessions.purgeExpired(new Date(), 2)).toBe(2);
    expect(await sessions.purgeExpired(new Date(), 2)).toBe(1);
    expect(await sessions.purgeExpired(new Date(), 2)).toBe(0);
    expect((await sessions.consume(live.stateHash))?.id).toBe(live.id);
  });
});
