import assert from "node:assert/strict";
import { NotHolderError, ResourceExhaustedError, SessionExpiredError } from "../errors.ts";
import { limits } from "../limits.ts";
import { Harness, tokenOf } from "./_harness.ts";
import { type CommandResult, LockStateMachine, resultError } from "./mod.ts";

function assertError(result: CommandResult, reason: string, messagePart?: string): void {
  assert.equal(result.type, "error", `expected ${reason}, got ${JSON.stringify(result)}`);
  if (result.type !== "error") return;
  assert.equal(result.reason, reason, result.message);
  if (messagePart !== undefined) {
    assert.ok(result.message.includes(messagePart), `message ${result.message}`);
  }
}

Deno.test("openSession: id is the entry index, default TTL, openKey dedupes retries", () => {
  const h = new Harness();
  h.index = 41;
  const outcome = h.run({
    type: "openSession",
    nowMs: 5,
    clientName: "alice",
    ttlMs: 0,
    openKey: "k1",
  });
  assert.deepEqual(outcome.result, { type: "sessionOpened", sessionId: 42, ttlMs: 10_000 });
  assert.equal(outcome.duplicate, false);
  const retry = h.run({
    type: "openSession",
    nowMs: 6,
    clientName: "alice",
    ttlMs: 0,
    openKey: "k1",
  });
  assert.deepEqual(retry.result, { type: "sessionOpened", sessionId: 42, ttlMs: 10_000 });
  assert.equal(retry.duplicate, true);
  assert.equal(h.machine.counts().sessions, 1);
  assert.deepEqual(h.machine.session(42), {
    id: 42,
    clientName: "alice",
    ttlMs: 10_000,
    openKey: "k1",
    openedAtMs: 5,
    held: 0,
    waiting: 0,
  });
  // Without a key every open is a new session.
  const a = h.open("bob", 1_000);
  const b = h.open("bob", 300_000);
  assert.notEqual(a, b);
  assert.equal(h.machine.session(b)?.ttlMs, 300_000);
  // A retry after the session ended still returns the original result.
  h.close(42, 1);
  const late = h.run({
    type: "openSession",
    nowMs: 7,
    clientName: "alice",
    ttlMs: 0,
    openKey: "k1",
  });
  assert.deepEqual(late.result, { type: "sessionOpened", sessionId: 42, ttlMs: 10_000 });
  assert.equal(h.machine.session(42), null);
});

Deno.test("acquire: FIFO grant order in commit order, tokens are the granting entry index", () => {
  const h = new Harness();
  const s1 = h.open("s1");
  const s2 = h.open("s2");
  const s3 = h.open("s3");
  const s4 = h.open("s4");
  const first = h.acquire(s1, "x", 1);
  assert.deepEqual(first.result, { type: "granted", token: first.index });
  assert.deepEqual(h.acquire(s3, "x", 1).result, { type: "queued", lock: "x" });
  assert.deepEqual(h.acquire(s2, "x", 1).result, { type: "queued", lock: "x" });
  assert.deepEqual(h.acquire(s4, "x", 1).result, { type: "queued", lock: "x" });
  assert.deepEqual(h.machine.waiters("x").map((w) => w.sessionId), [s3, s2, s4]);
  let holder = s1;
  let lastToken = tokenOf(first.result);
  for (const next of [s3, s2, s4]) {
    const released = h.release(holder, "x", 2);
    assert.deepEqual(released.result, { type: "released" });
    assert.deepEqual(released.grants, [
      { sessionId: next, lock: "x", requestId: 1, token: released.index },
    ]);
    assert.ok(released.index > lastToken);
    lastToken = released.index;
    assert.equal(h.machine.holder("x")?.sessionId, next);
    assert.equal(h.machine.holder("x")?.token, released.index);
    holder = next;
  }
  const last = h.release(s4, "x", 2);
  assert.deepEqual(last.grants, []);
  assert.equal(h.machine.holder("x"), null);
  assert.equal(h.machine.counts().locks, 0);
  assert.equal(h.machine.lastToken, lastToken);
});

Deno.test("acquire: re-acquire returns the current grant; acquire while queued stays queued", () => {
  const h = new Harness();
  const s1 = h.open();
  const s2 = h.open();
  const token = tokenOf(h.acquire(s1, "x", 1).result);
  const again = h.acquire(s1, "x", 2);
  assert.deepEqual(again.result, { type: "granted", token });
  assert.equal(again.duplicate, false);
  assert.deepEqual(h.acquire(s1, "x", 3, false).result, { type: "granted", token });
  assert.deepEqual(h.acquire(s2, "x", 1).result, { type: "queued", lock: "x" });
  assert.deepEqual(h.acquire(s2, "x", 2).result, { type: "queued", lock: "x" });
  assert.equal(h.machine.waiters("x").length, 1);
  assert.equal(h.machine.waiters("x")[0]?.requestId, 1);
  assert.equal(h.machine.lastToken, token);
  // The grant goes to the wait's original acquire (request 1); the alias request 2 also
  // answers with the grant on retry.
  const released = h.release(s1, "x", 4);
  assert.deepEqual(released.grants, [{
    sessionId: s2,
    lock: "x",
    requestId: 1,
    token: released.index,
  }]);
  assert.deepEqual(h.acquire(s2, "x", 1).result, { type: "granted", token: released.index });
  assert.deepEqual(h.acquire(s2, "x", 2).result, { type: "granted", token: released.index });
});

Deno.test("acquire without wait: notAcquired when held by another, granted when free", () => {
  const h = new Harness();
  const s1 = h.open();
  const s2 = h.open();
  h.acquire(s1, "x", 1);
  assert.deepEqual(h.acquire(s2, "x", 1, false).result, { type: "notAcquired" });
  assert.deepEqual(h.machine.waiters("x"), []);
  const freeOutcome = h.acquire(s2, "y", 2, false);
  assert.deepEqual(freeOutcome.result, { type: "granted", token: freeOutcome.index });
  h.release(s1, "x", 2);
  const after = h.acquire(s2, "x", 3, false);
  assert.deepEqual(after.result, { type: "granted", token: after.index });
});

Deno.test("release: by a non-holder, of a free lock, by a waiter, with a wrong token", () => {
  const h = new Harness();
  const s1 = h.open();
  const s2 = h.open();
  const token = tokenOf(h.acquire(s1, "x", 1).result);
  const notHolder = h.release(s2, "x", 1).result;
  assertError(notHolder, "NOT_HOLDER", "does not hold it");
  assert.ok(resultError(notHolder) instanceof NotHolderError);
  assert.equal(resultError(notHolder)?.reason, "NOT_HOLDER");
  assertError(h.release(s2, "free", 2).result, "NOT_HOLDER");
  h.acquire(s2, "x", 3);
  assertError(h.release(s2, "x", 4).result, "NOT_HOLDER", "it waits for it");
  assertError(h.release(s1, "x", 2, token + 1).result, "NOT_HOLDER", `token ${token}`);
  assert.equal(h.machine.holder("x")?.sessionId, s1);
  const ok = h.release(s1, "x", 3, token);
  assert.deepEqual(ok.result, { type: "released" });
  assert.equal(h.machine.holder("x")?.sessionId, s2);
  assert.equal(resultError(ok.result), null);
});

Deno.test("close and expire release many locks, grant next waiters with increasing tokens", () => {
  const h = new Harness();
  const s1 = h.open();
  const waiters = [h.open(), h.open(), h.open()];
  const names = ["c", "a", "b"];
  const tokens = names.map((name, i) => tokenOf(h.acquire(s1, name, i + 1).result));
  names.forEach((name, i) => h.acquire(waiters[i] as number, name, 1));
  h.acquire(s1, "other-held-elsewhere", 10);
  const s5 = h.open();
  h.acquire(s5, "w", 1);
  h.acquire(s1, "w", 11); // s1 also waits for "w"
  const closed = h.close(s1, 12);
  assert.deepEqual(closed.result, {
    type: "sessionClosed",
    released: ["c", "a", "b", "other-held-elsewhere"],
  });
  assert.deepEqual(
    closed.grants,
    names.map((name, i) => ({
      sessionId: waiters[i],
      lock: name,
      requestId: 1,
      token: closed.index + i,
    })),
  );
  assert.deepEqual(closed.endedSessions, [{
    sessionId: s1,
    reason: "closed",
    released: ["c", "a", "b", "other-held-elsewhere"],
    droppedWaits: [{ lock: "w", requestId: 11 }],
  }]);
  assert.ok(Math.min(...closed.grants.map((g) => g.token)) > Math.max(...tokens));
  assert.equal(h.machine.lastToken, closed.index + 2);
  assert.deepEqual(h.machine.waiters("w"), []);
  assert.equal(h.machine.holder("other-held-elsewhere"), null);
  assert.equal(h.machine.session(s1), null);
  // The next grant continues above the tokens of that entry (max(lastToken + 1, index)).
  const s6 = h.open();
  const next = h.acquire(s6, "fresh", 1);
  assert.equal(next.index, closed.index + 2);
  assert.deepEqual(next.result, { type: "granted", token: closed.index + 3 });
  // Retried close returns the original result; other requests get SESSION_EXPIRED.
  const retried = h.close(s1, 12);
  assert.deepEqual(retried.result, closed.result);
  assert.equal(retried.duplicate, true);
  assertError(h.acquire(s1, "z", 13).result, "SESSION_EXPIRED", "was closed");
  assertError(h.close(s1, 13).result, "SESSION_EXPIRED");

  // Expiry: the same, reason "expired".
  const waiter = waiters[0] as number;
  const s7 = h.open();
  h.acquire(s7, "c", 1);
  const expired = h.expire(waiter);
  assert.deepEqual(expired.result, { type: "sessionExpired", released: ["c"] });
  assert.deepEqual(expired.grants, [{
    sessionId: s7,
    lock: "c",
    requestId: 1,
    token: expired.index,
  }]);
  assert.equal(expired.endedSessions[0]?.reason, "expired");
  assertError(h.acquire(waiter, "c", 2).result, "SESSION_EXPIRED", "was expired");
  assertError(h.expire(waiter).result, "SESSION_EXPIRED");
  assertError(h.expire(999_999).result, "SESSION_EXPIRED", "does not exist");
  const error = resultError(h.release(999_999, "c", 1).result);
  assert.ok(error instanceof SessionExpiredError);
});

Deno.test("cancelWait: before the grant, after the grant, and when not waiting", () => {
  const h = new Harness();
  const s1 = h.open();
  const s2 = h.open();
  const s3 = h.open();
  h.acquire(s1, "x", 1);
  h.acquire(s2, "x", 7);
  h.acquire(s3, "x", 1);
  const cancelled = h.cancel(s2, "x", 7);
  assert.deepEqual(cancelled.result, { type: "waitCancelled" });
  assert.deepEqual(h.machine.waiters("x").map((w) => w.sessionId), [s3]);
  // A retry of the withdrawn acquire answers CANCELLED, and changes nothing.
  assertError(h.acquire(s2, "x", 7).result, "CANCELLED");
  assert.deepEqual(h.machine.waiters("x").map((w) => w.sessionId), [s3]);
  assert.deepEqual(h.cancel(s2, "x", 7).result, { type: "notWaiting" });
  assert.deepEqual(h.cancel(s2, "never", 8).result, { type: "notWaiting" });
  // After the grant the cancel reports the grant, so the server answers with it.
  const released = h.release(s1, "x", 2);
  const token = released.grants[0]?.token;
  assert.equal(released.grants[0]?.sessionId, s3);
  assert.deepEqual(h.cancel(s3, "x", 1).result, { type: "granted", token });
  assert.equal(h.machine.holder("x")?.sessionId, s3);
  assertError(h.cancel(424242, "x", 1).result, "SESSION_EXPIRED");
  assertError(h.cancel(s3, "", 1).result, "INVALID_ARGUMENT");
});

Deno.test("dedupe: retries return the original result and change nothing", () => {
  const h = new Harness();
  const s1 = h.open();
  const s2 = h.open();
  const t1 = tokenOf(h.acquire(s1, "x", 1).result);
  assert.deepEqual(h.acquire(s2, "x", 5).result, { type: "queued", lock: "x" });
  // Retry of the queued acquire while still queued.
  const retryQueued = h.acquire(s2, "x", 5);
  assert.deepEqual(retryQueued.result, { type: "queued", lock: "x" });
  assert.equal(retryQueued.duplicate, true);
  const released = h.release(s1, "x", 2);
  const t2 = released.grants[0]?.token;
  assert.ok(t2 !== undefined && t2 > t1);
  // Retried release: original result, no second hand-over.
  const hash = h.machine.stateHash();
  const retryRelease = h.release(s1, "x", 2);
  assert.deepEqual(retryRelease.result, { type: "released" });
  assert.equal(retryRelease.duplicate, true);
  assert.deepEqual(retryRelease.grants, []);
  assert.equal(h.machine.holder("x")?.sessionId, s2);
  // Retried acquire after it was granted later: the grant.
  assert.deepEqual(h.acquire(s2, "x", 5).result, { type: "granted", token: t2 });
  // Retried first acquire of s1 (now not holding): still its original grant.
  assert.deepEqual(h.acquire(s1, "x", 1).result, { type: "granted", token: t1 });
  assert.equal(h.machine.holder("x")?.sessionId, s2);
  assert.equal(h.machine.waiters("x").length, 0);
  // Only lastApplied changed between the two hashes' states: compare structure.
  assert.notEqual(h.machine.stateHash(), hash);
  // Granted, released, then retried: still the original grant.
  h.release(s2, "x", 6);
  assert.deepEqual(h.acquire(s2, "x", 5).result, { type: "granted", token: t2 });
  assert.equal(h.machine.holder("x"), null);
  // Errors are remembered too.
  assertError(h.release(s2, "x", 7).result, "NOT_HOLDER");
  h.acquire(s2, "x", 8);
  assertError(h.release(s2, "x", 7).result, "NOT_HOLDER");
  assert.equal(h.machine.holder("x")?.sessionId, s2);
});

Deno.test("dedupe: request id too old after the window; out-of-order ids above the floor", () => {
  const h = new Harness({ limits: { dedupeResultsPerSessionMax: 4 } });
  const s1 = h.open();
  for (let id = 1; id <= 6; id++) h.acquire(s1, `lock-${id}`, id * 10);
  // Remembered: 30, 40, 50, 60. Evicted: 10, 20 (floor 20).
  assertError(h.acquire(s1, "lock-1", 10).result, "INVALID_ARGUMENT", "too old");
  assertError(h.acquire(s1, "new", 15).result, "INVALID_ARGUMENT", "too old");
  assertError(h.release(s1, "lock-1", 20).result, "INVALID_ARGUMENT", "too old");
  assertError(h.close(s1, 20).result, "INVALID_ARGUMENT", "too old");
  assert.equal(h.machine.session(s1)?.held, 6);
  const remembered = h.acquire(s1, "lock-3", 30);
  assert.equal(remembered.duplicate, true);
  assert.equal(tokenOf(remembered.result), h.machine.holder("lock-3")?.token);
  // 25 was never applied and is above the floor: applied now (out of order tolerated).
  const outOfOrder = h.release(s1, "lock-1", 25);
  assert.deepEqual(outOfOrder.result, { type: "released" });
  assert.equal(outOfOrder.duplicate, false);
  assert.equal(h.machine.holder("lock-1"), null);
});

Deno.test("validation: lock names, client names, TTLs, ids, malformed entries", () => {
  const h = new Harness();
  const s1 = h.open();
  const badNames: [string, string][] = [
    ["", "empty"],
    ["x".repeat(257), "longer than 256"],
    ["€".repeat(86), "longer than 256"], // 258 bytes
    ["a\nb", "control character"],
    ["a\u0000", "control character"],
    ["del\u007f", "control character"],
    ["c1\u0085", "control character"],
  ];
  let requestId = 1;
  for (const [name, message] of badNames) {
    assertError(h.acquire(s1, name, requestId++).result, "INVALID_ARGUMENT", message);
    assertError(h.release(s1, name, requestId++).result, "INVALID_ARGUMENT", message);
  }
  // A lone surrogate cannot be encoded (UTF-8 has no form for it); applied directly it
  // is refused too.
  assert.throws(() => h.acquire(s1, "lone\ud800", requestId), /well-formed/);
  h.index -= 1;
  h.nowMs -= 10;
  const loneSurrogate = h.machine.apply(++h.index, {
    type: "acquire",
    nowMs: 1,
    sessionId: s1,
    lock: "lone\ud800",
    requestId: requestId++,
    wait: true,
  });
  assertError(loneSurrogate.result, "INVALID_ARGUMENT", "well-formed");
  for (const name of ["x".repeat(256), "é".repeat(128), "😀".repeat(64), "a b/c:d"]) {
    assert.equal(h.acquire(s1, name, requestId++).result.type, "granted", name);
  }
  const openBad = (clientName: string, ttlMs: number, message: string) => {
    const result = h.run({ type: "openSession", nowMs: 1, clientName, ttlMs, openKey: "" }).result;
    assertError(result, "INVALID_ARGUMENT", message);
  };
  openBad("x".repeat(257), 0, "client name");
  openBad("tab\there", 0, "control character");
  openBad("ok", 999, "TTL");
  openBad("ok", 300_001, "TTL");
  openBad("ok", 1, "TTL");
  assertError(
    h.run({ type: "openSession", nowMs: 1, clientName: "", ttlMs: 0, openKey: "k".repeat(257) })
      .result,
    "INVALID_ARGUMENT",
    "open key",
  );
  assert.equal(h.machine.session(h.open("x".repeat(256), 1_000))?.ttlMs, 1_000);
  // Unknown session.
  assertError(h.acquire(123_456, "x", 1).result, "SESSION_EXPIRED", "does not exist");
  // Ids of 0 and fractional numbers are refused (apply validates typed input too).
  const direct = new LockStateMachine();
  assertError(
    direct.apply(1, {
      type: "acquire",
      nowMs: 0,
      sessionId: 1,
      lock: "x",
      requestId: 0,
      wait: true,
    })
      .result,
    "INVALID_ARGUMENT",
    "requestId",
  );
  assertError(
    direct.apply(2, { type: "openSession", nowMs: 0, clientName: "a", ttlMs: 1500.5, openKey: "" })
      .result,
    "INVALID_ARGUMENT",
  );
  assertError(
    direct.apply(3, JSON.parse('{"type":"drop-table","nowMs":1}')).result,
    "INVALID_ARGUMENT",
    "type is unknown",
  );
  assertError(direct.apply(4, JSON.parse("null")).result, "INVALID_ARGUMENT");
  assert.equal(direct.lastApplied, 4);
  assert.equal(direct.counts().sessions, 0);
  // Malformed entries: error result, index advances, state otherwise unchanged.
  const before = h.machine.snapshot();
  const malformed = [
    new Uint8Array(),
    new Uint8Array([9, 3]),
    new Uint8Array([1, 77, 0]),
    new Uint8Array([1, 3, 0, 1, 1, 1, 0x78, 2]), // wait byte 2
    new Uint8Array([1, 3, 0, 1, 1, 2, 0xc3, 0x28, 1]), // invalid UTF-8
    new Uint8Array([1, 6, 0, 1, 0]), // trailing byte
    new Uint8Array([1, 6, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
    new Uint8Array(limits.commandBytesMax + 1),
  ];
  for (const data of malformed) {
    h.index += 1;
    const outcome = h.machine.applyEncoded(h.index, data);
    assertError(outcome.result, "INVALID_ARGUMENT", "decode");
    assert.equal(h.machine.lastApplied, h.index);
  }
  const after = LockStateMachine.restore(h.machine.snapshot());
  const reference = LockStateMachine.restore(before);
  assert.deepEqual(after.locks({ limit: 100 }), reference.locks({ limit: 100 }));
  assert.deepEqual(after.sessions(), reference.sessions());
});

Deno.test("apply: a non-increasing index is a programming error", () => {
  const machine = new LockStateMachine();
  machine.apply(5, { type: "expireSession", nowMs: 0, sessionId: 1 });
  assert.throws(() => machine.apply(5, { type: "expireSession", nowMs: 0, sessionId: 1 }), /index/);
  assert.throws(() => machine.applyEncoded(3, new Uint8Array()), /index/);
  assert.throws(() => machine.apply(6.5, { type: "expireSession", nowMs: 0, sessionId: 1 }));
});

Deno.test("limits: defaults come from src/limits.ts", () => {
  const machine = new LockStateMachine();
  assert.equal(machine.limits.locksMax, limits.locksMax);
  assert.equal(machine.limits.waitersPerLockMax, limits.waitersPerLockMax);
  assert.equal(machine.limits.sessionsMax, limits.sessionsMax);
  assert.equal(machine.limits.locksPerSessionMax, limits.locksPerSessionMax);
  assert.equal(machine.limits.dedupeResultsPerSessionMax, limits.dedupeResultsPerSessionMax);
});

Deno.test("limits: sessionsMax at its real default (100,000 sessions)", () => {
  const h = new Harness();
  for (let i = 0; i < limits.sessionsMax; i++) h.open();
  const refused = h.run({ type: "openSession", nowMs: 1, clientName: "", ttlMs: 0, openKey: "" });
  assertError(refused.result, "RESOURCE_EXHAUSTED", "sessionsMax");
  assert.ok(resultError(refused.result) instanceof ResourceExhaustedError);
  h.close(1, 1);
  assert.equal(h.open(), h.index);
});

Deno.test("limits: waitersPerLockMax at its real default (10,000 waiters)", () => {
  const h = new Harness();
  const holder = h.open();
  h.acquire(holder, "x", 1);
  const sessions: number[] = [];
  for (let i = 0; i <= limits.waitersPerLockMax; i++) sessions.push(h.open());
  for (let i = 0; i < limits.waitersPerLockMax; i++) {
    assert.equal(h.acquire(sessions[i] as number, "x", 1).result.type, "queued");
  }
  const last = sessions[limits.waitersPerLockMax] as number;
  assertError(h.acquire(last, "x", 1).result, "RESOURCE_EXHAUSTED", "waitersPerLockMax");
  assert.equal(h.machine.counts().waiters, limits.waitersPerLockMax);
  // Dropping one wait makes room.
  h.cancel(sessions[0] as number, "x", 1);
  assert.equal(h.acquire(last, "x", 2).result.type, "queued");
});

Deno.test("limits: locksMax and locksPerSessionMax (small overrides)", () => {
  const h = new Harness({ limits: { locksMax: 3, locksPerSessionMax: 2 } });
  const s1 = h.open();
  const s2 = h.open();
  h.acquire(s1, "a", 1);
  h.acquire(s1, "b", 2);
  assertError(h.acquire(s1, "c", 3).result, "RESOURCE_EXHAUSTED", "locksPerSessionMax");
  h.acquire(s2, "c", 1);
  assertError(h.acquire(s2, "d", 2).result, "RESOURCE_EXHAUSTED", "locksMax");
  // Waits count against locksPerSessionMax too.
  h.acquire(s2, "a", 3);
  assertError(h.acquire(s2, "b", 4).result, "RESOURCE_EXHAUSTED", "locksPerSessionMax");
  // Re-acquiring a held lock is not a new lock.
  assert.equal(h.acquire(s1, "a", 4).result.type, "granted");
  assert.deepEqual(h.machine.counts(), { sessions: 2, locks: 3, waiters: 1 });
});

Deno.test("ended sessions are remembered up to endedSessionsRememberedMax", () => {
  const h = new Harness({ limits: { endedSessionsRememberedMax: 2 } });
  const ids = [h.open("a", 0, "ka"), h.open("b", 0, "kb"), h.open("c", 0, "kc")];
  ids.forEach((id) => h.close(id, 1));
  assertError(h.acquire(ids[0] as number, "x", 2).result, "SESSION_EXPIRED", "does not exist");
  assertError(h.acquire(ids[1] as number, "x", 2).result, "SESSION_EXPIRED", "was closed");
  // The forgotten open key opens a new session; a remembered one returns the old id.
  assert.notEqual(h.open("a", 0, "ka"), ids[0]);
  assert.equal(h.open("c", 0, "kc"), ids[2]);
});
