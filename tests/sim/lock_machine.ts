/**
 * The lock state machine of src/lock/ plugged into the simulator: every replica applies
 * the same random lock commands, and on top of the simulator's per-index digest check
 * this adapter checks the lock invariants on every replica as it applies (DESIGN.md
 * invariants 3 and 4): at most one holder per lock, and fencing tokens that strictly grow
 * and are never below the index of the granting entry.
 *
 * @module
 */

import type { Entry } from "../../src/raft/mod.ts";
import { encodeCommand, type LockCommand, LockStateMachine } from "../../src/lock/mod.ts";
import type { Random } from "./random.ts";
import { SimViolation } from "./violation.ts";
import type { SimStateMachine, SimStateMachineFactory } from "./state_machine.ts";

const sessionsRememberedMax = 32;
/**
 * A small dedupe table, so that results are evicted (and the floor moves) within a run;
 * with the default 1,024 a snapshot never held an evicted session's table.
 */
const machineOptions = { limits: { dedupeResultsPerSessionMax: 4 } };

class LockReplica implements SimStateMachine {
  readonly #machine: LockStateMachine;
  readonly #factory: LockMachineFactory;
  #lastToken: number;

  constructor(machine: LockStateMachine, factory: LockMachineFactory) {
    this.#machine = machine;
    this.#factory = factory;
    this.#lastToken = machine.lastToken;
  }

  apply(entry: Entry): void {
    if (entry.kind !== "normal") return;
    const outcome = this.#machine.applyEncoded(entry.index, entry.data);
    const result = outcome.result;
    if (result.type === "sessionOpened") this.#factory.rememberSession(result.sessionId);
    const grants = [...outcome.grants];
    // A granted result is a new grant unless it repeats an earlier answer (a retried
    // request, or an acquire by the session already holding the lock).
    if (result.type === "granted" && !outcome.duplicate && result.token > this.#lastToken) {
      grants.push({ sessionId: 0, lock: "", requestId: 0, token: result.token });
    }
    // The token rule of src/lock: token = max(lastToken + 1, entry index), so tokens grow
    // strictly across every grant and are never below the granting entry's index.
    grants.sort((a, b) => a.token - b.token);
    for (const grant of grants) {
      if (grant.token < entry.index) {
        throw new SimViolation("fencing", `grant at index ${entry.index} has token ${grant.token}`);
      }
      if (grant.token <= this.#lastToken) {
        throw new SimViolation("fencing", `token ${grant.token} after token ${this.#lastToken}`);
      }
      this.#lastToken = grant.token;
      if (grant.lock !== "") {
        const holder = this.#machine.holder(grant.lock);
        if (
          holder === null || holder.sessionId !== grant.sessionId || holder.token !== grant.token
        ) {
          throw new SimViolation(
            "mutual exclusion",
            `grant of ${grant.lock} at ${entry.index} is not the holder`,
          );
        }
      }
    }
  }

  snapshot(): Uint8Array {
    return this.#machine.snapshot();
  }

  digest(): string {
    return `${this.#machine.lastApplied}:${this.#machine.stateHash()}`;
  }

  read(key: string): string | null {
    const holder = this.#machine.holder(key);
    return holder === null ? null : `${holder.sessionId}@${holder.token}`;
  }
}

/** Creates lock replicas and random lock commands. */
export class LockMachineFactory implements SimStateMachineFactory {
  readonly name = "lock";
  readonly #sessions: number[] = [];
  #requestId = 0;

  create(): SimStateMachine {
    return new LockReplica(new LockStateMachine(machineOptions), this);
  }

  restore(bytes: Uint8Array): SimStateMachine {
    return new LockReplica(LockStateMachine.restore(bytes, machineOptions), this);
  }

  /** Remembers a session some replica opened, for later commands (deterministic order). */
  rememberSession(sessionId: number): void {
    if (this.#sessions.includes(sessionId)) return;
    this.#sessions.push(sessionId);
    if (this.#sessions.length > sessionsRememberedMax) this.#sessions.shift();
  }

  write(key: string, _value: string, random: Random): Uint8Array {
    const nowMs = 1_000;
    const sessionId = this.#sessions.length === 0 || random.chance(0.05)
      ? 999_999
      : random.pick(this.#sessions);
    const lock = `lock-${key}`;
    const next = ++this.#requestId;
    // Some requests reach the log after newer ones of their session (a client retries a
    // request on a new leader): a first-time id below ids already applied.
    const requestId = random.chance(0.2) ? Math.max(1, next - random.range(1, 8)) : next;
    const choice = this.#sessions.length < 3 ? 0 : random.float();
    let command: LockCommand;
    if (choice < 0.15) {
      command = { type: "openSession", nowMs, clientName: `c${requestId}`, ttlMs: 0, openKey: "" };
    } else if (choice < 0.55) {
      command = { type: "acquire", nowMs, sessionId, lock, requestId, wait: random.chance(0.7) };
    } else if (choice < 0.85) {
      command = { type: "release", nowMs, sessionId, lock, requestId };
    } else if (choice < 0.9) {
      command = {
        type: "cancelWait",
        nowMs,
        sessionId,
        lock,
        requestId: Math.max(1, requestId - random.range(1, 5)),
      };
    } else if (choice < 0.95) {
      command = { type: "closeSession", nowMs, sessionId, requestId };
    } else {
      command = { type: "expireSession", nowMs, sessionId };
    }
    return encodeCommand(command);
  }
}
