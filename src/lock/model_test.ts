/**
 * Randomized model test: thousands of random commands (including retries, stale
 * ids, cancels, closes, expiries and malformed entries) over few sessions and locks,
 * checked after every entry against a simple reference model and the invariants:
 * mutual exclusion, FIFO in commit order, strictly increasing tokens, no lock held or
 * waited for by an ended session, determinism, and snapshot → restore equivalence.
 */

import assert from "node:assert/strict";
import {
  type ApplyOutcome,
  type CommandResult,
  encodeCommand,
  type LockCommand,
  LockStateMachine,
} from "./mod.ts";

/** mulberry32: a small seeded PRNG (tests only; the state machine never uses randomness). */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const lockNames = ["a", "b", "c", "ü"];
const dedupeMax = 6;
const machineOptions = { limits: { dedupeResultsPerSessionMax: dedupeMax } };

/** Results compared without error messages. */
type Shape = Record<string, unknown>;
function shape(result: CommandResult): Shape {
  return result.type === "error" ? { type: "error", reason: result.reason } : { ...result };
}

interface ModelSession {
  readonly dedupe: Map<number, CommandResult>;
  floor: number;
  readonly ttlMs: number;
  readonly openKey: string;
}

interface Waiting {
  readonly sessionId: number;
  readonly requestId: number;
}

/** Reference model: the documented semantics, written plainly with arrays. */
class Model {
  readonly sessions = new Map<number, ModelSession>();
  readonly ended = new Map<number, { closeRequestId: number; result: CommandResult }>();
  readonly openKeys = new Map<string, { id: number; ttlMs: number }>();
  readonly holders = new Map<string, { sessionId: number; token: number }>();
  readonly queues = new Map<string, Waiting[]>();
  lastToken = 0;
  grants: { sessionId: number; lock: string; requestId: number; token: number }[] = [];
  duplicate = false;

  apply(index: number, command: LockCommand | null): CommandResult {
    this.grants = [];
    this.duplicate = false;
    if (command === null) return { type: "error", reason: "INVALID_ARGUMENT", message: "" };
    switch (command.type) {
      case "openSession": {
        const previous = command.openKey === "" ? undefined : this.openKeys.get(command.openKey);
        if (previous !== undefined) {
          this.duplicate = true;
          return { type: "sessionOpened", sessionId: previous.id, ttlMs: previous.ttlMs };
        }
        const ttlMs = command.ttlMs === 0 ? 10_000 : command.ttlMs;
        this.sessions.set(index, { dedupe: new Map(), floor: 0, ttlMs, openKey: command.openKey });
        if (command.openKey !== "") this.openKeys.set(command.openKey, { id: index, ttlMs });
        return { type: "sessionOpened", sessionId: index, ttlMs };
      }
      case "expireSession": {
        if (!this.sessions.has(command.sessionId)) return expired();
        const result: CommandResult = {
          type: "sessionExpired",
          released: this.end(command.sessionId, index),
        };
        this.ended.set(command.sessionId, { closeRequestId: 0, result });
        return result;
      }
      case "cancelWait":
        return this.cancel(command.sessionId, command.lock);
      case "closeSession": {
        const ended = this.ended.get(command.sessionId);
        if (ended !== undefined && ended.closeRequestId === command.requestId) {
          this.duplicate = true;
          return ended.result;
        }
      }
    }
    return this.deduplicated(index, command);
  }

  deduplicated(
    index: number,
    command: Extract<LockCommand, { requestId: number }>,
  ): CommandResult {
    const session = this.sessions.get(command.sessionId);
    if (session === undefined) return expired();
    const remembered = session.dedupe.get(command.requestId);
    if (remembered !== undefined) {
      this.duplicate = true;
      if (remembered.type !== "queued") return remembered;
      const holder = this.holders.get(remembered.lock);
      if (holder?.sessionId === command.sessionId) return { type: "granted", token: holder.token };
      const queue = this.queues.get(remembered.lock) ?? [];
      if (queue.some((w) => w.sessionId === command.sessionId)) return remembered;
      return { type: "error", reason: "CANCELLED", message: "" };
    }
    if (command.requestId <= session.floor) {
      return { type: "error", reason: "INVALID_ARGUMENT", message: "" };
    }
    let result: CommandResult;
    if (command.type === "closeSession") {
      result = { type: "sessionClosed", released: this.end(command.sessionId, index) };
      this.ended.set(command.sessionId, { closeRequestId: command.requestId, result });
      return result;
    } else if (command.type === "acquire") {
      result = this.acquire(
        index,
        command.sessionId,
        command.lock,
        command.requestId,
        command.wait,
      );
    } else if (command.type === "release") {
      result = this.release(index, command.sessionId, command.lock, command.token ?? 0);
    } else {
      throw new Error("unreachable");
    }
    session.dedupe.set(command.requestId, result);
    if (session.dedupe.size > dedupeMax) {
      const oldest = session.dedupe.keys().next().value as number;
      session.dedupe.delete(oldest);
      session.floor = Math.max(session.floor, oldest);
    }
    return result;
  }

  acquire(index: number, sessionId: number, lock: string, requestId: number, wait: boolean) {
    const holder = this.holders.get(lock);
    if (holder === undefined) {
      const token = this.nextToken(index);
      this.holders.set(lock, { sessionId, token });
      return { type: "granted", token } as const;
    }
    if (holder.sessionId === sessionId) return { type: "granted", token: holder.token } as const;
    if (!wait) return { type: "notAcquired" } as const;
    const queue = this.queues.get(lock) ?? [];
    if (!queue.some((w) => w.sessionId === sessionId)) queue.push({ sessionId, requestId });
    this.queues.set(lock, queue);
    return { type: "queued", lock } as const;
  }

  release(index: number, sessionId: number, lock: string, token: number): CommandResult {
    const holder = this.holders.get(lock);
    if (holder?.sessionId !== sessionId || (token !== 0 && token !== holder.token)) {
      return { type: "error", reason: "NOT_HOLDER", message: "" };
    }
    this.handOver(index, lock);
    return { type: "released" };
  }

  cancel(sessionId: number, lock: string): CommandResult {
    const session = this.sessions.get(sessionId);
    if (session === undefined) return expired();
    const holder = this.holders.get(lock);
    if (holder?.sessionId === sessionId) return { type: "granted", token: holder.token };
    const queue = this.queues.get(lock) ?? [];
    const position = queue.findIndex((w) => w.sessionId === sessionId);
    if (position < 0) return { type: "notWaiting" };
    const [waiter] = queue.splice(position, 1);
    if (waiter !== undefined && session.dedupe.get(waiter.requestId)?.type === "queued") {
      session.dedupe.set(waiter.requestId, { type: "error", reason: "CANCELLED", message: "" });
    }
    return { type: "waitCancelled" };
  }

  handOver(index: number, lock: string): void {
    const queue = this.queues.get(lock) ?? [];
    const next = queue.shift();
    if (next === undefined) {
      this.holders.delete(lock);
      return;
    }
    const token = this.nextToken(index);
    this.holders.set(lock, { sessionId: next.sessionId, token });
    this.grants.push({ sessionId: next.sessionId, lock, requestId: next.requestId, token });
    const dedupe = this.sessions.get(next.sessionId)?.dedupe;
    if (dedupe?.get(next.requestId)?.type === "queued") {
      dedupe.set(next.requestId, { type: "granted", token });
    }
  }

  end(sessionId: number, index: number): string[] {
    for (const queue of this.queues.values()) {
      const position = queue.findIndex((w) => w.sessionId === sessionId);
      if (position >= 0) queue.splice(position, 1);
    }
    const held = [...this.holders].filter(([, h]) => h.sessionId === sessionId)
      .sort((x, y) => x[1].token - y[1].token).map(([name]) => name);
    for (const name of held) this.handOver(index, name);
    const session = this.sessions.get(sessionId);
    this.sessions.delete(sessionId);
    if (session !== undefined && session.openKey !== "") {
      // The open key keeps answering with the ended session (the machine remembers it).
      this.openKeys.set(session.openKey, { id: sessionId, ttlMs: session.ttlMs });
    }
    return held;
  }

  nextToken(index: number): number {
    this.lastToken = Math.max(this.lastToken + 1, index);
    return this.lastToken;
  }
}

function expired(): CommandResult {
  return { type: "error", reason: "SESSION_EXPIRED", message: "" };
}

/** Generates random commands; remembers ids so it can retry and cancel. */
class Generator {
  readonly random: () => number;
  readonly knownSessions: number[] = [];
  readonly nextRequestId = new Map<number, number>();
  readonly history = new Map<number, { requestId: number; lock: string }[]>();
  nowMs = 1_000_000;

  constructor(seed: number) {
    this.random = prng(seed);
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)] as T;
  }

  /** The next entry: a command, or malformed bytes. */
  next(view: LockStateMachine): { command: LockCommand | null; data: Uint8Array } {
    this.nowMs += Math.floor(this.random() * 50);
    const roll = this.random();
    if (roll < 0.02) {
      const data = new Uint8Array(1 + Math.floor(this.random() * 6));
      data[0] = 9; // unknown version: always malformed
      return { command: null, data };
    }
    const command = this.command(roll, view);
    return { command, data: encodeCommand(command) };
  }

  command(roll: number, view: LockStateMachine): LockCommand {
    const nowMs = this.nowMs;
    const live = view.sessions().map((session) => session.id);
    if (roll < 0.03 + (live.length < 3 ? 0.2 : 0) || this.knownSessions.length === 0) {
      const openKey = this.random() < 0.5 ? "" : `key-${Math.floor(this.random() * 40)}`;
      return { type: "openSession", nowMs, clientName: "c", ttlMs: 0, openKey };
    }
    // Mostly live sessions; sometimes an ended one (SESSION_EXPIRED paths).
    const sessionId = live.length > 0 && this.random() < 0.9
      ? this.pick(live)
      : this.pick(this.knownSessions);
    const held = view.sessionLocks(sessionId)?.held ?? [];
    const history = this.history.get(sessionId) ?? [];
    if (roll < 0.05) return { type: "expireSession", nowMs, sessionId };
    if (roll < 0.12 && history.length > 0) {
      const past = this.pick(history);
      return { type: "cancelWait", nowMs, sessionId, lock: past.lock, requestId: past.requestId };
    }
    const releasing = roll >= 0.6;
    let lock = releasing && held.length > 0 && this.random() < 0.8
      ? this.pick(held)
      : this.pick(lockNames);
    let requestId: number;
    if (this.random() < 0.15 && history.length > 0) {
      const past = this.pick(history);
      requestId = past.requestId; // retry (possibly of another command kind: the id wins)
      lock = past.lock;
    } else {
      // Mostly increasing ids; sometimes skipping one, sometimes an old or forgotten one.
      requestId = (this.nextRequestId.get(sessionId) ?? 0) + 1 + Math.floor(this.random() * 2);
      this.nextRequestId.set(sessionId, requestId);
      history.push({ requestId, lock });
      this.history.set(sessionId, history);
    }
    if (roll < 0.14) return { type: "closeSession", nowMs, sessionId, requestId };
    if (!releasing) {
      const wait = this.random() < 0.8;
      return { type: "acquire", nowMs, sessionId, lock, requestId, wait };
    }
    const tokenRoll = this.random();
    if (tokenRoll < 0.5) return { type: "release", nowMs, sessionId, lock, requestId };
    const token = tokenRoll < 0.85
      ? view.holder(lock)?.token ?? 1
      : 1 + Math.floor(this.random() * 400);
    return { type: "release", nowMs, sessionId, lock, requestId, token };
  }
}

/** Checks the invariants and the model against the machine after one entry. */
function checkEntry(
  machine: LockStateMachine,
  model: Model,
  outcome: ApplyOutcome,
  expected: CommandResult,
  state: { lastToken: number },
): void {
  const context = () => `at index ${outcome.index}: ${JSON.stringify(outcome)}`;
  assert.deepEqual(shape(outcome.result), shape(expected), context());
  assert.equal(outcome.duplicate, model.duplicate, context());
  assert.deepEqual(outcome.grants, model.grants, context());
  // Tokens strictly increasing over every new grant (own grant or side-effect grants).
  const newTokens = outcome.grants.map((g) => g.token);
  if (outcome.result.type === "granted" && outcome.result.token > state.lastToken) {
    assert.equal(outcome.result.token, Math.max(state.lastToken + 1, outcome.index));
    newTokens.unshift(outcome.result.token);
  }
  for (const token of newTokens) {
    assert.ok(token > state.lastToken, `token ${token} not above ${state.lastToken}`);
    state.lastToken = token;
  }
  assert.equal(machine.lastToken, state.lastToken);
  // Mutual exclusion, FIFO queue contents and order, holders all match the model.
  for (const lock of lockNames) {
    const holder = machine.holder(lock);
    const modelHolder = model.holders.get(lock);
    assert.deepEqual(
      holder === null ? undefined : { sessionId: holder.sessionId, token: holder.token },
      modelHolder,
      `holder of ${lock} ${context()}`,
    );
    const waiters = machine.waiters(lock).map((w) => ({
      sessionId: w.sessionId,
      requestId: w.requestId,
    }));
    assert.deepEqual(waiters, model.queues.get(lock) ?? [], `queue of ${lock} ${context()}`);
    assert.ok(!waiters.some((w) => w.sessionId === holder?.sessionId), "holder also waits");
    if (holder === null) assert.equal(waiters.length, 0, "free lock with waiters");
  }
  // No ended session holds or waits.
  for (const ended of outcome.endedSessions) {
    assert.equal(machine.session(ended.sessionId), null);
    for (const lock of lockNames) {
      assert.notEqual(machine.holder(lock)?.sessionId, ended.sessionId);
      assert.ok(!machine.waiters(lock).some((w) => w.sessionId === ended.sessionId));
    }
  }
  assert.equal(machine.counts().sessions, model.sessions.size);
}

function runSeed(seed: number, steps: number): void {
  const generator = new Generator(seed);
  const model = new Model();
  const machine = new LockStateMachine(machineOptions);
  const independent = new LockStateMachine(machineOptions);
  let twin: LockStateMachine | null = null;
  const tokenState = { lastToken: 0 };
  let index = 0;
  for (let step = 0; step < steps; step++) {
    index += 1 + (generator.random() < 0.1 ? 1 : 0); // gaps: noop entries are not applied
    const { command, data } = generator.next(machine);
    const outcome = machine.applyEncoded(index, data);
    const expected = model.apply(index, command);
    if (command?.type === "openSession" && outcome.result.type === "sessionOpened") {
      if (!generator.knownSessions.includes(outcome.result.sessionId)) {
        generator.knownSessions.push(outcome.result.sessionId);
      }
    }
    try {
      checkEntry(machine, model, outcome, expected, tokenState);
      // Determinism: an independent machine fed the same entries agrees on everything.
      assert.deepEqual(independent.applyEncoded(index, data), outcome);
      // Snapshot equivalence: a restored twin behaves identically from then on.
      if (twin !== null) assert.deepEqual(twin.applyEncoded(index, data), outcome);
      if (step % 200 === 0) {
        const snapshot = machine.snapshot();
        twin = LockStateMachine.restore(snapshot, machineOptions);
        assert.equal(twin.stateHash(), machine.stateHash());
      }
    } catch (error) {
      throw new Error(`seed ${seed} step ${step} failed (replay with this seed)`, {
        cause: error,
      });
    }
  }
  assert.equal(independent.stateHash(), machine.stateHash());
  assert.equal(twin?.stateHash(), machine.stateHash());
}

Deno.test("model: random commands keep every invariant and match the reference model", () => {
  const seeds = [1, 2, 3, 42, 20261126];
  for (const seed of seeds) runSeed(seed, 4_000);
});
