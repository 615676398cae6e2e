/**
 * The disclosure ledger (src/domain/tokens/disclosures.ts) over an in-memory audit log that can
 * hold or refuse its writes, on a manual clock: a first disclosure is answered only once its
 * record is durable and is forgotten when the record fails; repeats are answered without a
 * promise and written as one counted `token.reissued` row per key and pass; a replaced token,
 * a dropped key, a failed pass and the memory bound behave as the audit trail promises.
 */
import { describe, expect, it } from "vitest";
import type { AuditEventInput, AuditLog } from "../../src/domain/ports.js";
import { createDisclosureLedger, scopeSetKey } from "../../src/domain/tokens/disclosures.js";
import type { Integration, RequestContext } from "../../src/domain/types.js";
import { manualClock } from "../support/manual-clock.js";
import { integrationFixture, silentLogger } from "../support/token-fakes.js";

/** An audit log whose writes resolve at once, or wait for the test, or fail. */
function controllableAudit() {
  const written: AuditEventInput[] = [];
  const held: Array<() => void> = [];
  const state = { mode: "write" as "write" | "hold" | "fail" };
  const audit: AuditLog = {
    record(event) {
      if (state.mode === "fail") return Promise.reject(new Error("the audit record could not be written"));
      if (state.mode === "write") {
        written.push(event);
        return Promise.resolve();
      }
      return new Promise<void>((resolve) =>
        held.push(() => {
          written.push(event);
          resolve();
        }),
      );
    },
  };
  return {
    audit,
    written,
    state,
    release: () => held.splice(0).forEach((write) => write()),
    actions: () => written.map((event) => event.action),
    reissued: () => written.filter((event) => event.action === "token.reissued"),
  };
}

/** Lets background passes (started on a replacement or a dropped key) run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

const caller = (subject = "billing", requestId = "req-1", kind: "service" | "user" = "service"): RequestContext => ({
  principal: { kind, subject, issuer: "local" },
  requestId,
  peer: `10.0.0.1:${requestId.length}`,
});

function setUp(maxKeys = 100) {
  const log = controllableAudit();
  const ledger = createDisclosureLedger({ audit: log.audit, logger: silentLogger, maxKeys });
  const clock = manualClock(Date.parse("2030-01-01T12:00:00Z"));
  const disclose = (ctx: RequestContext, integration: Integration, version: number, scopes: readonly string[] = ["read"]) =>
    ledger.disclose(ctx, integration, version, scopes, clock.nowMs());
  return { ...log, ledger, clock, disclose };
}

const integration = integrationFixture("int-1");

describe("the disclosure ledger", () => {
  it("answers a first disclosure once its token.issued record is durable, naming caller, integration, scope set and token version", async () => {
    const { state, release, written, disclose } = setUp();
    state.mode = "hold";
    const first = disclose(caller("billing", "req-first"), integration, 7, ["write", "read", "write"]);
    expect(first).toBeInstanceOf(Promise);
    let answered = false;
    void first?.then(() => (answered = true));
    await settle();
    expect(answered).toBe(false);
    release();
    await first;
    expect(written).toEqual([
      {
        action: "token.issued",
        outcome: "success",
        caller: "billing",
        callerKind: "service",
        requestId: "req-first",
        peer: "10.0.0.1:9",
        integrationId: "int-1",
        userId: "alice",
        provider: "sandbox",
        scopes: ["read", "write"],
        details: { token_version: "7" },
      },
    ]);
  });

  it("answers a repeat without a promise and writes the repeats as one counted token.reissued row per pass", async () => {
    const { ledger, clock, written, reissued, disclose } = setUp();
    await disclose(caller("billing", "req-0"), integration, 3);
    clock.advance(1_000);
    expect(disclose(caller("billing", "req-1"), integration, 3)).toBeUndefined();
    clock.advance(2_500);
    expect(disclose(caller("billing", "req-2"), integration, 3)).toBeUndefined();
    expect(written).toHaveLength(1);
    await ledger.flush();
    expect(reissued()).toEqual([
      {
        action: "token.reissued",
        outcome: "success",
        caller: "billing",
        callerKind: "service",
        requestId: "req-2",
        peer: "10.0.0.1:5",
        integrationId: "int-1",
        userId: "alice",
        provider: "sandbox",
        scopes: ["read"],
        details: {
          token_version: "3",
          count: "2",
          first_seen: "2030-01-01T12:00:01.000Z",
          last_seen: "2030-01-01T12:00:03.500Z",
          first_request_id: "req-1",
          last_request_id: "req-2",
        },
      },
    ]);
    // A pass writes what was counted since the previous one, and nothing when nothing was.
    await ledger.flush();
    expect(reissued()).toHaveLength(1);
    disclose(caller("billing", "req-3"), integration, 3);
    await ledger.flush();
    expect(reissued().map((event) => event.details?.["count"])).toEqual(["2", "1"]);
  });

  it("writes 1,000 repeats as one row counting 1000 beside the one token.issued", async () => {
    const { ledger, actions, reissued, disclose } = setUp();
    await disclose(caller(), integration, 1);
    for (let i = 0; i < 1_000; i++) expect(disclose(caller("billing", `req-${i}`), integration, 1)).toBeUndefined();
    await ledger.flush();
    expect(actions()).toEqual(["token.issued", "token.reissued"]);
    expect(reissued()[0]?.details).toMatchObject({ count: "1000", first_request_id: "req-0", last_request_id: "req-999" });
  });

  it("keys a disclosure by caller (kind and subject), integration, token version and the set of required scopes", async () => {
    const { actions, disclose } = setUp();
    await disclose(caller("billing"), integration, 1, ["b", "a"]);
    expect(disclose(caller("billing"), integration, 1, ["a", "b", "a"])).toBeUndefined();
    for (const first of [
      disclose(caller("billing"), integration, 1, ["a"]),
      disclose(caller("billing"), integration, 1, []),
      disclose(caller("mailer"), integration, 1, ["a", "b"]),
      disclose(caller("billing", "req-1", "user"), integration, 1, ["a", "b"]),
      disclose(caller("billing"), integrationFixture("int-2"), 1, ["a", "b"]),
    ]) {
      expect(first).toBeInstanceOf(Promise);
      await first;
    }
    expect(actions()).toEqual(Array.from({ length: 6 }, () => "token.issued"));
    expect(scopeSetKey(["b", "a", "b"])).toBe(scopeSetKey(["a", "b"]));
  });

  it("fails a first disclosure whose record fails and does not remember it: the next call is a first disclosure again", async () => {
    const { state, actions, ledger, disclose } = setUp();
    state.mode = "fail";
    await expect(disclose(caller(), integration, 1)).rejects.toThrow("could not be written");
    expect(ledger.size).toBe(0);
    state.mode = "write";
    const again = disclose(caller(), integration, 1);
    expect(again).toBeInstanceOf(Promise);
    await again;
    expect(actions()).toEqual(["token.issued"]);
    // Nothing of a failure stays behind, not even the version it was for.
    state.mode = "fail";
    await expect(disclose(caller(), integrationFixture("int-2"), 5)).rejects.toThrow();
    state.mode = "write";
    await disclose(caller(), integrationFixture("int-2"), 4);
    expect(disclose(caller(), integrationFixture("int-2"), 4)).toBeUndefined();
  });

  it("makes a call arriving while the first record is being written wait for it, then counts it as a repeat; both fail with it", async () => {
    const { state, release, reissued, ledger, disclose } = setUp();
    state.mode = "hold";
    const first = disclose(caller("billing", "req-a"), integration, 1);
    const joined = disclose(caller("billing", "req-b"), integration, 1);
    expect(joined).toBeInstanceOf(Promise);
    state.mode = "write";
    release();
    await Promise.all([first, joined]);
    await ledger.flush();
    expect(reissued().map((event) => event.details?.["count"])).toEqual(["1"]);

    state.mode = "fail";
    const failing = disclose(caller("billing", "req-c"), integrationFixture("int-2"), 1);
    const joinedFailing = disclose(caller("billing", "req-d"), integrationFixture("int-2"), 1);
    await expect(failing).rejects.toThrow();
    await expect(joinedFailing).rejects.toThrow();
    state.mode = "write";
    expect(disclose(caller(), integrationFixture("int-2"), 1)).toBeInstanceOf(Promise);
  });

  it("on a newer token version, writes the old version's counts at once and starts a new first disclosure", async () => {
    const { reissued, actions, written, disclose } = setUp();
    await disclose(caller(), integration, 1);
    disclose(caller(), integration, 1);
    disclose(caller(), integration, 1);
    const newer = disclose(caller(), integration, 2);
    expect(newer).toBeInstanceOf(Promise);
    await newer;
    await settle();
    expect(actions()).toEqual(["token.issued", "token.issued", "token.reissued"]);
    expect(written[1]?.details).toEqual({ token_version: "2" });
    expect(reissued()[0]?.details).toMatchObject({ token_version: "1", count: "2" });
  });

  it("on a replacement from the change feed or an eviction, writes the integration's counts and forgets its keys", async () => {
    const { ledger, reissued, disclose } = setUp();
    await disclose(caller(), integration, 4);
    disclose(caller(), integration, 4);
    ledger.replaced("int-1", 4);
    expect(ledger.size).toBe(1);
    ledger.replaced("int-1", 5);
    expect(ledger.size).toBe(0);
    await settle();
    expect(reissued()[0]?.details).toMatchObject({ token_version: "4", count: "1" });
    await disclose(caller(), integration, 5);
    disclose(caller(), integration, 5);
    ledger.replaced("int-1");
    await settle();
    expect(reissued().map((event) => event.details?.["token_version"])).toEqual(["4", "5"]);
    expect(disclose(caller(), integration, 5)).toBeInstanceOf(Promise);
  });

  it("records every disclosure of a token older than one already handed out, without remembering it", async () => {
    const { actions, ledger, disclose } = setUp();
    await disclose(caller(), integration, 2);
    await disclose(caller(), integration, 1);
    await disclose(caller(), integration, 1);
    expect(actions()).toEqual(["token.issued", "token.issued", "token.issued"]);
    expect(ledger.size).toBe(1);
  });

  it("keeps the counts of a failed pass, makes repeats wait for the retry and fail with it, and writes each count once", async () => {
    const { state, ledger, reissued, disclose } = setUp();
    await disclose(caller(), integration, 1);
    disclose(caller("billing", "req-1"), integration, 1);
    disclose(caller("billing", "req-2"), integration, 1);
    state.mode = "fail";
    await expect(ledger.flush()).rejects.toThrow();
    // The two counts are not written: a repeat now needs them written first.
    const refused = disclose(caller("billing", "req-3"), integration, 1);
    expect(refused).toBeInstanceOf(Promise);
    await expect(refused).rejects.toThrow("could not be written");
    state.mode = "write";
    const retried = disclose(caller("billing", "req-4"), integration, 1);
    expect(retried).toBeInstanceOf(Promise);
    await retried;
    expect(disclose(caller("billing", "req-5"), integration, 1)).toBeUndefined();
    await ledger.flush();
    // The failed repeat got no token and is not counted.
    expect(reissued().map((event) => [event.details?.["count"], event.details?.["first_request_id"], event.details?.["last_request_id"]])).toEqual([
      ["2", "req-1", "req-2"],
      ["2", "req-4", "req-5"],
    ]);
  });

  it("bounds the keys it remembers, dropping the least recently used integration's keys after handing their counts to a pass", async () => {
    const { ledger, reissued, actions, disclose } = setUp(2);
    const [a, b, c] = ["int-a", "int-b", "int-c"].map((id) => integrationFixture(id));
    if (!a || !b || !c) throw new Error("fixtures");
    await disclose(caller(), a, 1);
    await disclose(caller(), b, 1);
    disclose(caller(), a, 1);
    disclose(caller(), b, 1);
    // a was used before b last: a goes.
    disclose(caller(), a, 1);
    disclose(caller(), b, 1);
    await disclose(caller(), c, 1);
    expect(ledger.size).toBe(2);
    await settle();
    expect(reissued().map((event) => [event.integrationId, event.details?.["count"]])).toEqual([["int-a", "2"]]);
    // Dropped: its next call is a first disclosure again (the safe direction).
    expect(disclose(caller(), a, 1)).toBeInstanceOf(Promise);
    expect(disclose(caller(), c, 1)).toBeUndefined();
    expect(actions().filter((action) => action === "token.issued")).toHaveLength(4);
  });

  it("drops the oldest keys of one integration that alone outgrows the bound", async () => {
    const { ledger, reissued, disclose } = setUp(2);
    await disclose(caller("one"), integration, 1);
    disclose(caller("one"), integration, 1);
    await disclose(caller("two"), integration, 1);
    await disclose(caller("three"), integration, 1);
    expect(ledger.size).toBe(2);
    await settle();
    expect(reissued().map((event) => event.caller)).toEqual(["one"]);
    expect(disclose(caller("three"), integration, 1)).toBeUndefined();
  });
  it("offers a repeat for counting only when disclose would count it at once, and counts it as disclose does", async () => {
    const { state, release, ledger, clock, reissued, disclose } = setUp();
    const billing = caller().principal;
    // Nothing known yet, then a first disclosure still being written: disclose decides.
    expect(ledger.repeatOf(billing, integration.id, 3, ["read"])).toBeUndefined();
    state.mode = "hold";
    const first = disclose(caller("billing", "req-first"), integration, 3);
    expect(ledger.repeatOf(billing, integration.id, 3, ["read"])).toBeUndefined();
    release();
    await first;
    // Another scope set, another caller or another version is not this key's repeat.
    expect(ledger.repeatOf(billing, integration.id, 3, ["write"])).toBeUndefined();
    expect(ledger.repeatOf(caller("mail").principal, integration.id, 3, ["read"])).toBeUndefined();
    expect(ledger.repeatOf(billing, integration.id, 4, ["read"])).toBeUndefined();
    // Asking counts nothing; the function it returns counts like a repeat through disclose.
    const repeat = ledger.repeatOf(billing, integration.id, 3, ["read", "read"]);
    expect(repeat).toBeTypeOf("function");
    state.mode = "write";
    clock.advance(1_000);
    repeat?.(caller("billing", "req-2"), clock.nowMs());
    expect(disclose(caller("billing", "req-3"), integration, 3)).toBeUndefined();
    await ledger.flush();
    expect(reissued()).toHaveLength(1);
    expect(reissued()[0]?.details).toMatchObject({ count: "2", first_request_id: "req-2", last_request_id: "req-3" });
  });
});
