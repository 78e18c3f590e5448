/**
 * The replicated lock state machine: sessions, named exclusive locks with FIFO wait
 * queues, fencing tokens and exactly-once request deduplication. Every server applies
 * the same committed Raft entries in the same order and so holds the same state.
 *
 * Pure and deterministic: no clocks, timers, randomness or I/O. Time comes in as
 * `nowMs` inside each command (written by the leader). Map iteration order is part of
 * the state and is preserved by snapshots.
 *
 * ## Fencing tokens
 *
 * Every grant gets `token = max(lastToken + 1, entryIndex)`. In the normal case that
 * is the Raft index of the entry that granted the lock (one grant per entry). When one
 * entry grants several waiters (a close or expiry releasing several locks), the
 * grants get `index, index + 1, ...`, and the next entries continue above them, so
 * tokens are strictly increasing across all grants of all locks, on every replica.
 *
 * ## Exactly-once
 *
 * closeSession, acquire and release carry `(sessionId, requestId)`. A session keeps
 * the results of its most recent `dedupeResultsPerSessionMax` requests; a retry of a
 * remembered id returns the original result and changes nothing. Ids should be
 * strictly increasing per session; ids arriving out of order are tolerated as long as
 * they are above the highest evicted id (`dedupeFloor`). An id at or below it that is
 * not remembered gets INVALID_ARGUMENT "request id too old" (it may have been applied
 * and forgotten). The result remembered for a blocking acquire is its final answer
 * once known: `queued` becomes `granted` (with the token) when the wait is granted,
 * or a CANCELLED error when the wait is withdrawn.
 *
 * A closed or expired session is remembered (the most recent
 * {@link LockStateMachineLimits.endedSessionsRememberedMax}) so that a retried close
 * or open returns its original result.
 *
 * @module
 */

import { limits } from "../limits.ts";
import { invariant } from "./_invariant.ts";
import { decodeState, encodeState } from "./_snapshot.ts";
import { digest64Hex } from "./_codec.ts";
import {
  emptyState,
  type LockMode,
  LockState,
  type MachineState,
  newSession,
  type SessionState,
} from "./_state.ts";
import {
  type AcquireCommand,
  type CancelWaitCommand,
  type CloseSessionCommand,
  commandShapeError,
  decodeCommand,
  type ExpireSessionCommand,
  type LockCommand,
  type OpenSessionCommand,
  type ReleaseCommand,
} from "./command.ts";
import {
  type ApplyOutcome,
  type CommandResult,
  type DroppedWait,
  type EndedSession,
  type ErrorResult,
  errorResult,
  type Grant,
  notAcquiredResult,
  notWaitingResult,
  releasedResult,
  waitCancelledResult,
} from "./result.ts";
import { clientNameError, lockNameError, openKeyError, resolveTtlMs } from "./validation.ts";

/** The bounds the state machine enforces (defaults from `src/limits.ts`). */
export interface LockStateMachineLimits {
  readonly locksMax: number;
  readonly waitersPerLockMax: number;
  readonly sessionsMax: number;
  readonly locksPerSessionMax: number;
  readonly dedupeResultsPerSessionMax: number;
  /** Ended sessions remembered for retried closes and opens. */
  readonly endedSessionsRememberedMax: number;
}

/**
 * Default for {@link LockStateMachineLimits.endedSessionsRememberedMax}. Not (yet) in
 * `src/limits.ts`.
 */
export const endedSessionsRememberedMaxDefault = 1_024;

/** Options of {@link LockStateMachine}. Every replica must use the same options. */
export interface LockStateMachineOptions {
  /** Overrides of the defaults from `src/limits.ts` (tests use small ones). */
  readonly limits?: Partial<LockStateMachineLimits>;
}

/** The current grant of a lock. */
export interface HolderInfo {
  readonly sessionId: number;
  readonly clientName: string;
  readonly token: number;
  /** Request id of the acquire that led to the grant. */
  readonly requestId: number;
  readonly grantedAtMs: number;
  readonly mode: LockMode;
}

/** One wait in a lock's queue. */
export interface WaiterInfo {
  readonly sessionId: number;
  readonly clientName: string;
  readonly requestId: number;
  readonly queuedAtMs: number;
  readonly mode: LockMode;
}

/** A lock with its holder and queue (FIFO order). */
export interface LockInfo {
  readonly name: string;
  readonly holder: HolderInfo;
  readonly waiters: readonly WaiterInfo[];
}

/** An open session. `ttlMs` lets a new leader restart its expiry timer. */
export interface SessionInfo {
  readonly id: number;
  readonly clientName: string;
  readonly ttlMs: number;
  readonly openKey: string;
  readonly openedAtMs: number;
  /** Locks held. */
  readonly held: number;
  /** Locks waited for. */
  readonly waiting: number;
}

/** Sizes of the state. */
export interface LockStateCounts {
  readonly sessions: number;
  readonly locks: number;
  readonly waiters: number;
}

/** Collects the side effects of one entry. */
interface ApplyContext {
  readonly index: number;
  readonly nowMs: number;
  duplicate: boolean;
  readonly grants: Grant[];
  readonly endedSessions: EndedSession[];
}

/**
 * The lock state machine. Feed it committed entries in log order with
 * {@link LockStateMachine.applyEncoded}; the results tell the server what to answer.
 *
 * @example
 * ```ts
 * const machine = new LockStateMachine();
 * const opened = machine.apply(1, { type: "openSession", nowMs: 0, clientName: "a", ttlMs: 0, openKey: "k" });
 * // opened.result: { type: "sessionOpened", sessionId: 1, ttlMs: 10000 }
 * machine.apply(2, { type: "acquire", nowMs: 5, sessionId: 1, lock: "x", requestId: 1, wait: true });
 * // result: { type: "granted", token: 2 }
 * ```
 */
export class LockStateMachine {
  #state: MachineState = emptyState();
  readonly #limits: LockStateMachineLimits;

  /** A machine with no sessions and no locks, at index 0. */
  constructor(options: LockStateMachineOptions = {}) {
    this.#limits = {
      locksMax: limits.locksMax,
      waitersPerLockMax: limits.waitersPerLockMax,
      sessionsMax: limits.sessionsMax,
      locksPerSessionMax: limits.locksPerSessionMax,
      dedupeResultsPerSessionMax: limits.dedupeResultsPerSessionMax,
      endedSessionsRememberedMax: endedSessionsRememberedMaxDefault,
      ...options.limits,
    };
    for (const [name, value] of Object.entries(this.#limits)) {
      invariant(Number.isSafeInteger(value) && value >= 1, `limit ${name} must be ≥ 1`);
    }
  }

  /**
   * Restores a machine from {@link LockStateMachine.snapshot} output.
   * @throws {CorruptSnapshotError} when the data is corrupt or inconsistent.
   */
  static restore(data: Uint8Array, options: LockStateMachineOptions = {}): LockStateMachine {
    const machine = new LockStateMachine(options);
    machine.#state = decodeState(data);
    return machine;
  }

  /** The limits in force. */
  get limits(): LockStateMachineLimits {
    return this.#limits;
  }

  /** Index of the last applied entry (0 when none). */
  get lastApplied(): number {
    return this.#state.lastApplied;
  }

  /** The highest fencing token granted so far (0 when none). */
  get lastToken(): number {
    return this.#state.lastToken;
  }

  /**
   * Applies the command of the entry at `index`. Never throws for bad input: errors
   * are results, and nothing changes for a failed command (except the dedupe table
   * remembering the failure, so a retry fails the same way).
   *
   * @param index the Raft index; must be above {@link lastApplied} (the caller's
   * duty; a violation is a programming error and throws).
   */
  apply(index: number, command: LockCommand): ApplyOutcome {
    invariant(
      Number.isSafeInteger(index) && index > this.#state.lastApplied,
      `apply index ${index} must be a safe integer above lastApplied ${this.#state.lastApplied}`,
    );
    this.#state.lastApplied = index;
    const shapeError = commandShapeError(command, true);
    const context: ApplyContext = {
      index,
      nowMs: shapeError === null ? command.nowMs : 0,
      duplicate: false,
      grants: [],
      endedSessions: [],
    };
    const result = shapeError === null
      ? this.#dispatch(command, context)
      : errorResult("INVALID_ARGUMENT", shapeError);
    return {
      index,
      result,
      duplicate: context.duplicate,
      grants: context.grants,
      endedSessions: context.endedSessions,
    };
  }

  /**
   * Decodes the entry data and applies it; malformed data yields an INVALID_ARGUMENT
   * result (and still advances {@link lastApplied}), identically on every replica.
   */
  applyEncoded(index: number, data: Uint8Array): ApplyOutcome {
    const decoded = decodeCommand(data);
    if (decoded.ok) return this.apply(index, decoded.command);
    invariant(
      Number.isSafeInteger(index) && index > this.#state.lastApplied,
      `apply index ${index} must be a safe integer above lastApplied ${this.#state.lastApplied}`,
    );
    this.#state.lastApplied = index;
    return {
      index,
      result: errorResult("INVALID_ARGUMENT", decoded.message),
      duplicate: false,
      grants: [],
      endedSessions: [],
    };
  }

  /** The whole state (see `_snapshot.ts` for the format). */
  snapshot(): Uint8Array {
    return encodeState(this.#state);
  }

  /** A deterministic 64-bit digest (16 hex digits) of the whole state, for comparisons. */
  stateHash(): string {
    return digest64Hex(encodeState(this.#state));
  }

  // ---- queries (read-only) ----

  /** The current grant of `lock`, or null when nobody holds it. */
  holder(lock: string): HolderInfo | null {
    const state = this.#state.locks.get(lock);
    return state === undefined ? null : this.#holderInfo(state);
  }

  /** The queue of `lock` in FIFO order (empty when none). */
  waiters(lock: string): WaiterInfo[] {
    const state = this.#state.locks.get(lock);
    if (state === undefined || state.waiters === null) return [];
    return [...state.waiters.values()].map((waiter) => ({
      sessionId: waiter.sessionId,
      clientName: this.#state.sessions.get(waiter.sessionId)?.clientName ?? "",
      requestId: waiter.requestId,
      queuedAtMs: waiter.queuedAtMs,
      mode: waiter.mode,
    }));
  }

  /** An open session, or null when unknown, closed or expired. */
  session(id: number): SessionInfo | null {
    const session = this.#state.sessions.get(id);
    return session === undefined ? null : sessionInfo(session);
  }

  /** Open sessions in opening order, at most `limit` (default all). */
  sessions(options: { limit?: number } = {}): SessionInfo[] {
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    const result: SessionInfo[] = [];
    for (const session of this.#state.sessions.values()) {
      if (result.length >= limit) break;
      result.push(sessionInfo(session));
    }
    return result;
  }

  /**
   * The locks a session holds (ascending token) and waits for (ascending request
   * id), or null when the session is not open.
   */
  sessionLocks(id: number): { held: string[]; waiting: string[] } | null {
    const session = this.#state.sessions.get(id);
    if (session === undefined) return null;
    return {
      held: this.#heldByToken(session),
      waiting: this.#waitsByRequest(session).map((w) => w.lock),
    };
  }

  /** Existing locks in creation order, at most `limit` (default 1000). */
  locks(options: { limit?: number } = {}): LockInfo[] {
    const limit = options.limit ?? 1000;
    const result: LockInfo[] = [];
    for (const [name, state] of this.#state.locks) {
      if (result.length >= limit) break;
      result.push({ name, holder: this.#holderInfo(state), waiters: this.waiters(name) });
    }
    return result;
  }

  /** Numbers of sessions, locks and waits. */
  counts(): LockStateCounts {
    return {
      sessions: this.#state.sessions.size,
      locks: this.#state.locks.size,
      waiters: this.#state.waiterCount,
    };
  }

  #holderInfo(state: LockState): HolderInfo {
    return {
      sessionId: state.holderSessionId,
      clientName: this.#state.sessions.get(state.holderSessionId)?.clientName ?? "",
      token: state.token,
      requestId: state.holderRequestId,
      grantedAtMs: state.grantedAtMs,
      mode: "exclusive",
    };
  }

  // ---- commands ----

  #dispatch(command: LockCommand, context: ApplyContext): CommandResult {
    switch (command.type) {
      case "openSession":
        return this.#openSession(command, context);
      case "closeSession":
        return this.#closeSession(command, context);
      case "acquire":
        return this.#deduplicated(command, context, (session) => this.#acquire(session, command));
      case "release":
        return this.#deduplicated(
          command,
          context,
          (session) => this.#release(session, command, context),
        );
      case "cancelWait":
        return this.#cancelWait(command);
      case "expireSession":
        return this.#expireSession(command, context);
    }
  }

  #openSession(command: OpenSessionCommand, context: ApplyContext): CommandResult {
    const ttlMs = resolveTtlMs(command.ttlMs);
    if (typeof ttlMs === "string") return errorResult("INVALID_ARGUMENT", ttlMs);
    const nameError = clientNameError(command.clientName) ?? openKeyError(command.openKey);
    if (nameError !== null) return errorResult("INVALID_ARGUMENT", nameError);
    if (command.openKey !== "") {
      const previousId = this.#state.openKeys.get(command.openKey) ??
        this.#state.endedOpenKeys.get(command.openKey);
      if (previousId !== undefined) {
        context.duplicate = true;
        const previous = this.#state.sessions.get(previousId) ?? this.#state.ended.get(previousId);
        invariant(previous !== undefined, `open key index points to missing session ${previousId}`);
        return { type: "sessionOpened", sessionId: previousId, ttlMs: previous.ttlMs };
      }
    }
    if (this.#state.sessions.size >= this.#limits.sessionsMax) {
      return errorResult(
        "RESOURCE_EXHAUSTED",
        `Cannot open a session as ${this.#limits.sessionsMax} sessions are open (sessionsMax)`,
      );
    }
    const id = context.index;
    this.#state.sessions.set(
      id,
      newSession({
        id,
        clientName: command.clientName,
        ttlMs,
        openKey: command.openKey,
        openedAtMs: command.nowMs,
      }),
    );
    if (command.openKey !== "") this.#state.openKeys.set(command.openKey, id);
    return { type: "sessionOpened", sessionId: id, ttlMs };
  }

  #closeSession(command: CloseSessionCommand, context: ApplyContext): CommandResult {
    const ended = this.#state.ended.get(command.sessionId);
    if (ended !== undefined && ended.closeRequestId === command.requestId) {
      context.duplicate = true;
      return ended.result;
    }
    return this.#deduplicated(command, context, (session) => {
      const result: CommandResult = {
        type: "sessionClosed",
        released: this.#endSession(session, "closed", context),
      };
      this.#rememberEnded(session, "closed", command.requestId, result);
      return result;
    });
  }

  #expireSession(command: ExpireSessionCommand, context: ApplyContext): CommandResult {
    const session = this.#liveSession(command.sessionId);
    if (!isSession(session)) return session;
    const result: CommandResult = {
      type: "sessionExpired",
      released: this.#endSession(session, "expired", context),
    };
    this.#rememberEnded(session, "expired", 0, result);
    return result;
  }

  /**
   * Runs `execute` for a new request of a live session and remembers its result, or
   * replays the remembered result of a retry.
   */
  #deduplicated(
    command: { readonly sessionId: number; readonly requestId: number },
    context: ApplyContext,
    execute: (session: SessionState) => CommandResult,
  ): CommandResult {
    const session = this.#liveSession(command.sessionId);
    if (!isSession(session)) return session;
    const remembered = session.dedupe.get(command.requestId);
    if (remembered !== undefined) {
      context.duplicate = true;
      return this.#currentAnswer(session, remembered);
    }
    if (command.requestId <= session.dedupeFloor) {
      return errorResult(
        "INVALID_ARGUMENT",
        `Cannot apply the request as its request id is too old: received ${command.requestId}, session ${session.id} remembers only ids above ${session.dedupeFloor}`,
      );
    }
    const result = execute(session);
    if (this.#state.sessions.has(session.id)) this.#remember(session, command.requestId, result);
    return result;
  }

  #acquire(session: SessionState, command: AcquireCommand): CommandResult {
    const nameError = lockNameError(command.lock);
    if (nameError !== null) return errorResult("INVALID_ARGUMENT", nameError);
    const lock = this.#state.locks.get(command.lock);
    if (lock === undefined) {
      const refusal = this.#sessionLoadError(session, command.lock) ??
        (this.#state.locks.size >= this.#limits.locksMax
          ? `Cannot create lock ${
            JSON.stringify(command.lock)
          } as ${this.#limits.locksMax} locks exist (locksMax)`
          : null);
      if (refusal !== null) return errorResult("RESOURCE_EXHAUSTED", refusal);
      const token = this.#nextToken(this.#state.lastApplied);
      this.#state.locks.set(
        command.lock,
        new LockState(session.id, token, command.requestId, command.nowMs),
      );
      session.held.add(command.lock);
      return { type: "granted", token };
    }
    if (lock.holderSessionId === session.id) return { type: "granted", token: lock.token };
    if (!command.wait) return notAcquiredResult;
    if (lock.waiters?.has(session.id)) return { type: "queued", lock: command.lock };
    const waiterCount = lock.waiters?.size ?? 0;
    const refusal = this.#sessionLoadError(session, command.lock) ??
      (waiterCount >= this.#limits.waitersPerLockMax
        ? `Cannot wait for lock ${
          JSON.stringify(command.lock)
        } as ${this.#limits.waitersPerLockMax} sessions wait for it (waitersPerLockMax)`
        : null);
    if (refusal !== null) return errorResult("RESOURCE_EXHAUSTED", refusal);
    lock.waiters ??= new Map();
    lock.waiters.set(session.id, {
      sessionId: session.id,
      requestId: command.requestId,
      mode: "exclusive",
      queuedAtMs: command.nowMs,
    });
    session.waiting.add(command.lock);
    this.#state.waiterCount++;
    return { type: "queued", lock: command.lock };
  }

  #release(session: SessionState, command: ReleaseCommand, context: ApplyContext): CommandResult {
    const nameError = lockNameError(command.lock);
    if (nameError !== null) return errorResult("INVALID_ARGUMENT", nameError);
    const lock = this.#state.locks.get(command.lock);
    if (lock === undefined || lock.holderSessionId !== session.id) {
      const waits = session.waiting.has(command.lock) ? " (it waits for it)" : "";
      return errorResult(
        "NOT_HOLDER",
        `Cannot release lock ${
          JSON.stringify(command.lock)
        } as session ${session.id} does not hold it${waits}`,
      );
    }
    const token = command.token ?? 0;
    if (token !== 0 && token !== lock.token) {
      return errorResult(
        "NOT_HOLDER",
        `Cannot release lock ${
          JSON.stringify(command.lock)
        } as session ${session.id} holds it with token ${lock.token}: received token ${token}`,
      );
    }
    session.held.delete(command.lock);
    this.#handOver(command.lock, lock, context);
    return releasedResult;
  }

  #cancelWait(command: CancelWaitCommand): CommandResult {
    const session = this.#liveSession(command.sessionId);
    if (!isSession(session)) return session;
    const nameError = lockNameError(command.lock);
    if (nameError !== null) return errorResult("INVALID_ARGUMENT", nameError);
    const lock = this.#state.locks.get(command.lock);
    if (lock === undefined) return notWaitingResult;
    if (lock.holderSessionId === session.id) return { type: "granted", token: lock.token };
    const waiter = lock.waiters?.get(session.id);
    if (waiter === undefined) return notWaitingResult;
    this.#removeWaiter(session, command.lock, lock);
    if (session.dedupe.get(waiter.requestId)?.type === "queued") {
      session.dedupe.set(waiter.requestId, cancelledResult(command.lock));
    }
    return waitCancelledResult;
  }

  // ---- helpers ----

  /** The open session, or the SESSION_EXPIRED result for a closed, expired or unknown one. */
  #liveSession(sessionId: number): SessionState | ErrorResult {
    const session = this.#state.sessions.get(sessionId);
    if (session !== undefined) return session;
    const ended = this.#state.ended.get(sessionId);
    return errorResult(
      "SESSION_EXPIRED",
      ended === undefined
        ? `Cannot use session ${sessionId} as it does not exist (or ended long ago)`
        : `Cannot use session ${sessionId} as it was ${ended.reason}`,
    );
  }

  /**
   * What a retry gets: the remembered result, except that a remembered `queued` (of
   * an acquire that found the session already waiting) is answered from the current
   * state: granted while the session holds the lock, queued while it waits, else
   * CANCELLED.
   */
  #currentAnswer(session: SessionState, remembered: CommandResult): CommandResult {
    if (remembered.type !== "queued") return remembered;
    const lock = this.#state.locks.get(remembered.lock);
    if (lock?.holderSessionId === session.id) return { type: "granted", token: lock.token };
    if (lock?.waiters?.has(session.id)) return remembered;
    return cancelledResult(remembered.lock);
  }

  #remember(session: SessionState, requestId: number, result: CommandResult): void {
    session.dedupe.set(requestId, result);
    if (session.dedupe.size <= this.#limits.dedupeResultsPerSessionMax) return;
    // Evict the oldest insertion; everything evicted is at or below the floor, so an
    // unseen id above the floor was never applied.
    const oldest = session.dedupe.keys().next();
    invariant(oldest.done !== true, "dedupe table cannot be empty here");
    session.dedupe.delete(oldest.value);
    session.dedupeFloor = Math.max(session.dedupeFloor, oldest.value);
  }

  #rememberEnded(
    session: SessionState,
    reason: "closed" | "expired",
    closeRequestId: number,
    result: CommandResult,
  ): void {
    const { ended, endedOpenKeys } = this.#state;
    ended.set(session.id, {
      sessionId: session.id,
      reason,
      openKey: session.openKey,
      ttlMs: session.ttlMs,
      closeRequestId,
      result,
    });
    if (session.openKey !== "") endedOpenKeys.set(session.openKey, session.id);
    if (ended.size <= this.#limits.endedSessionsRememberedMax) return;
    const oldest = ended.values().next();
    invariant(oldest.done !== true, "ended table cannot be empty here");
    ended.delete(oldest.value.sessionId);
    if (endedOpenKeys.get(oldest.value.openKey) === oldest.value.sessionId) {
      endedOpenKeys.delete(oldest.value.openKey);
    }
  }

  /** Why the session may not take one more lock or wait, or null. */
  #sessionLoadError(session: SessionState, lock: string): string | null {
    const load = session.held.size + session.waiting.size;
    if (load < this.#limits.locksPerSessionMax) return null;
    return `Cannot acquire lock ${
      JSON.stringify(lock)
    } as session ${session.id} already holds or waits for ${load} locks (locksPerSessionMax)`;
  }

  /** Issues the next fencing token: `max(lastToken + 1, index)`. */
  #nextToken(index: number): number {
    const token = Math.max(this.#state.lastToken + 1, index);
    this.#state.lastToken = token;
    return token;
  }

  /**
   * `lock` lost its holder: grant the head of its queue (FIFO), or delete the lock
   * when nobody waits.
   */
  #handOver(name: string, lock: LockState, context: ApplyContext): void {
    const head = lock.waiters?.values().next();
    if (lock.waiters === null || head === undefined || head.done === true) {
      this.#state.locks.delete(name);
      return;
    }
    const waiter = head.value;
    const session = this.#state.sessions.get(waiter.sessionId);
    invariant(session !== undefined, `waiter of ${name} has no session ${waiter.sessionId}`);
    this.#removeWaiter(session, name, lock);
    const token = this.#nextToken(context.index);
    lock.holderSessionId = session.id;
    lock.token = token;
    lock.holderRequestId = waiter.requestId;
    lock.grantedAtMs = context.nowMs;
    session.held.add(name);
    if (session.dedupe.get(waiter.requestId)?.type === "queued") {
      session.dedupe.set(waiter.requestId, { type: "granted", token });
    }
    context.grants.push({ sessionId: session.id, lock: name, requestId: waiter.requestId, token });
  }

  #removeWaiter(session: SessionState, name: string, lock: LockState): void {
    invariant(lock.waiters !== null, `lock ${name} has no queue`);
    lock.waiters.delete(session.id);
    if (lock.waiters.size === 0) lock.waiters = null;
    session.waiting.delete(name);
    this.#state.waiterCount--;
  }

  /**
   * Ends a session: drops its waits, releases its locks in ascending token order
   * (granting the next waiters), forgets it. Returns the released lock names.
   */
  #endSession(
    session: SessionState,
    reason: "closed" | "expired",
    context: ApplyContext,
  ): string[] {
    const droppedWaits: DroppedWait[] = this.#waitsByRequest(session);
    for (const { lock: name } of droppedWaits) {
      const lock = this.#state.locks.get(name);
      invariant(lock !== undefined, `session ${session.id} waits for missing lock ${name}`);
      this.#removeWaiter(session, name, lock);
    }
    const released = this.#heldByToken(session);
    for (const name of released) {
      const lock = this.#state.locks.get(name);
      invariant(lock !== undefined, `session ${session.id} holds missing lock ${name}`);
      session.held.delete(name);
      this.#handOver(name, lock, context);
    }
    this.#state.sessions.delete(session.id);
    if (session.openKey !== "") this.#state.openKeys.delete(session.openKey);
    context.endedSessions.push({ sessionId: session.id, reason, released, droppedWaits });
    return released;
  }

  /** Held lock names in ascending token order (independent of Set insertion order). */
  #heldByToken(session: SessionState): string[] {
    const entries: [string, number][] = [];
    for (const name of session.held) {
      const lock = this.#state.locks.get(name);
      invariant(lock !== undefined, `session ${session.id} holds missing lock ${name}`);
      entries.push([name, lock.token]);
    }
    entries.sort((a, b) => a[1] - b[1]);
    return entries.map((entry) => entry[0]);
  }

  /** Waits in ascending request id order (independent of Set insertion order). */
  #waitsByRequest(session: SessionState): DroppedWait[] {
    const waits: DroppedWait[] = [];
    for (const name of session.waiting) {
      const waiter = this.#state.locks.get(name)?.waiters?.get(session.id);
      invariant(waiter !== undefined, `session ${session.id} waits for ${name} without a waiter`);
      waits.push({ lock: name, requestId: waiter.requestId });
    }
    waits.sort((a, b) => a.requestId - b.requestId || (a.lock < b.lock ? -1 : 1));
    return waits;
  }
}

function isSession(value: SessionState | ErrorResult): value is SessionState {
  return !("type" in value);
}

function cancelledResult(lock: string): ErrorResult {
  return errorResult(
    "CANCELLED",
    `Cannot grant lock ${JSON.stringify(lock)} to this request as its wait was withdrawn`,
  );
}

function sessionInfo(session: SessionState): SessionInfo {
  return {
    id: session.id,
    clientName: session.clientName,
    ttlMs: session.ttlMs,
    openKey: session.openKey,
    openedAtMs: session.openedAtMs,
    held: session.held.size,
    waiting: session.waiting.size,
  };
}
