/**
 * The in-memory state of the lock state machine. Private to `src/lock/`: the state
 * machine mutates it, the snapshot codec reads and rebuilds it.
 *
 * Memory: the scale target is 100,000 held locks in one server, so a lock without
 * waiters is one small object (no arrays, no maps); a wait queue exists only while
 * somebody waits.
 *
 * @module
 */

import type { CommandResult } from "./result.ts";

/**
 * How a lock is held or wanted. Only exclusive exists today; shared (read) locks and
 * semaphores add modes here, a holder set next to the single holder in
 * {@link LockState}, and a grant rule that may grant several queue heads at once.
 */
export type LockMode = "exclusive";

/** One session waiting in a lock's FIFO queue. */
export interface Waiter {
  readonly sessionId: number;
  /** The request id of the acquire that queued this wait. */
  readonly requestId: number;
  readonly mode: LockMode;
  /** Leader time of the entry that queued the wait. */
  readonly queuedAtMs: number;
}

/**
 * A lock that exists: it always has a holder (a lock nobody holds is deleted, since
 * a free lock never has waiters: a release hands it straight to the queue head).
 */
export class LockState {
  holderSessionId: number;
  /** Fencing token of the current grant. */
  token: number;
  /** Request id of the acquire that led to the current grant. */
  holderRequestId: number;
  /** Leader time of the entry that granted it. */
  grantedAtMs: number;
  /**
   * FIFO queue keyed by session id (Map keeps insertion order, and allows O(1)
   * lookup and removal from the middle for cancelled waits); null when empty.
   */
  waiters: Map<number, Waiter> | null;

  constructor(
    holderSessionId: number,
    token: number,
    holderRequestId: number,
    grantedAtMs: number,
  ) {
    this.holderSessionId = holderSessionId;
    this.token = token;
    this.holderRequestId = holderRequestId;
    this.grantedAtMs = grantedAtMs;
    this.waiters = null;
  }
}

/** An open session. */
export interface SessionState {
  /** The Raft index of the entry that opened it. */
  readonly id: number;
  readonly clientName: string;
  readonly ttlMs: number;
  readonly openKey: string;
  readonly openedAtMs: number;
  /** Names of the locks it holds (derived from the locks; rebuilt on restore). */
  readonly held: Set<string>;
  /** Names of the locks it waits for (derived from the queues; rebuilt on restore). */
  readonly waiting: Set<string>;
  /** Results of its most recent requests by request id, oldest first. */
  readonly dedupe: Map<number, CommandResult>;
  /** Highest request id evicted from `dedupe`; ids at or below it are "too old". */
  dedupeFloor: number;
}

/** A recently ended session, kept so a retried close or open gets its original result. */
export interface EndedSessionRecord {
  readonly sessionId: number;
  readonly reason: "closed" | "expired";
  readonly openKey: string;
  readonly ttlMs: number;
  /** Request id of the close; 0 when the session expired. */
  readonly closeRequestId: number;
  /** The result of the close or expiry. */
  readonly result: CommandResult;
}

/** The whole replicated state. Map iteration order is part of it (and of snapshots). */
export interface MachineState {
  lastApplied: number;
  lastToken: number;
  readonly sessions: Map<number, SessionState>;
  readonly locks: Map<string, LockState>;
  /** Open key → live session id (derived; rebuilt on restore). */
  readonly openKeys: Map<string, number>;
  /** Recently ended sessions by id, oldest first. */
  readonly ended: Map<number, EndedSessionRecord>;
  /** Open key → ended session id (derived; rebuilt on restore). */
  readonly endedOpenKeys: Map<string, number>;
  /** Total waits across all locks (derived). */
  waiterCount: number;
}

/** An empty state. */
export function emptyState(): MachineState {
  return {
    lastApplied: 0,
    lastToken: 0,
    sessions: new Map(),
    locks: new Map(),
    openKeys: new Map(),
    ended: new Map(),
    endedOpenKeys: new Map(),
    waiterCount: 0,
  };
}

/** A new session with empty lock sets and dedupe table. */
export function newSession(
  fields: Pick<SessionState, "id" | "clientName" | "ttlMs" | "openKey" | "openedAtMs">,
): SessionState {
  return {
    id: fields.id,
    clientName: fields.clientName,
    ttlMs: fields.ttlMs,
    openKey: fields.openKey,
    openedAtMs: fields.openedAtMs,
    held: new Set(),
    waiting: new Set(),
    dedupe: new Map(),
    dedupeFloor: 0,
  };
}
