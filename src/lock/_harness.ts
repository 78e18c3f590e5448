/**
 * Test helper: a lock state machine with an index counter and short methods per
 * command, every command going through encode → applyEncoded like the server does.
 * Used by the tests in this folder only.
 *
 * @module
 */

import { encodeCommand, type LockCommand } from "./command.ts";
import type { ApplyOutcome, CommandResult } from "./result.ts";
import { LockStateMachine, type LockStateMachineOptions } from "./state_machine.ts";

/** Drives a {@link LockStateMachine} with consecutive indexes. */
export class Harness {
  machine: LockStateMachine;
  index = 0;
  nowMs = 1_000;
  /** Every outcome applied so far. */
  readonly outcomes: ApplyOutcome[] = [];

  constructor(options: LockStateMachineOptions = {}) {
    this.machine = new LockStateMachine(options);
  }

  /** Applies one command at the next index (encoded, as the server does). */
  run(command: LockCommand): ApplyOutcome {
    this.index += 1;
    this.nowMs += 10;
    const outcome = this.machine.applyEncoded(this.index, encodeCommand(command));
    this.outcomes.push(outcome);
    return outcome;
  }

  /** Opens a session and returns its id. */
  open(clientName = "client", ttlMs = 0, openKey = ""): number {
    const outcome = this.run({
      type: "openSession",
      nowMs: this.nowMs,
      clientName,
      ttlMs,
      openKey,
    });
    if (outcome.result.type !== "sessionOpened") {
      throw new Error(`open failed: ${JSON.stringify(outcome.result)}`);
    }
    return outcome.result.sessionId;
  }

  acquire(sessionId: number, lock: string, requestId: number, wait = true): ApplyOutcome {
    return this.run({ type: "acquire", nowMs: this.nowMs, sessionId, lock, requestId, wait });
  }

  release(sessionId: number, lock: string, requestId: number, token?: number): ApplyOutcome {
    return this.run(
      token === undefined
        ? { type: "release", nowMs: this.nowMs, sessionId, lock, requestId }
        : { type: "release", nowMs: this.nowMs, sessionId, lock, requestId, token },
    );
  }

  cancel(sessionId: number, lock: string, requestId: number): ApplyOutcome {
    return this.run({ type: "cancelWait", nowMs: this.nowMs, sessionId, lock, requestId });
  }

  close(sessionId: number, requestId: number): ApplyOutcome {
    return this.run({ type: "closeSession", nowMs: this.nowMs, sessionId, requestId });
  }

  expire(sessionId: number): ApplyOutcome {
    return this.run({ type: "expireSession", nowMs: this.nowMs, sessionId });
  }
}

/** The token of a granted result; throws otherwise. */
export function tokenOf(result: CommandResult): number {
  if (result.type !== "granted") throw new Error(`expected granted, got ${JSON.stringify(result)}`);
  return result.token;
}
