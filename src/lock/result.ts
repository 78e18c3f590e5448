/**
 * What applying a command produces: the command's own result, the grants it caused
 * for other waiters and the sessions it ended. Results are plain data (they are kept
 * in the dedupe table and in snapshots); {@link resultError} turns an error result
 * into the typed error of `src/errors.ts`.
 *
 * @module
 */

import {
  DlockError,
  type ErrorReason,
  InvalidArgumentError,
  NotHolderError,
  ResourceExhaustedError,
  SessionExpiredError,
} from "../errors.ts";

/** Error reasons the state machine itself produces. */
export type LockErrorReason = Extract<
  ErrorReason,
  "SESSION_EXPIRED" | "NOT_HOLDER" | "INVALID_ARGUMENT" | "RESOURCE_EXHAUSTED" | "CANCELLED"
>;

/** A failed command; nothing changed (except the dedupe table remembering it). */
export interface ErrorResult {
  readonly type: "error";
  readonly reason: LockErrorReason;
  readonly message: string;
}

/** The result of one command. Which types each command yields is listed per command. */
export type CommandResult =
  /** openSession. */
  | { readonly type: "sessionOpened"; readonly sessionId: number; readonly ttlMs: number }
  /** closeSession: the locks it released, in release order. */
  | { readonly type: "sessionClosed"; readonly released: readonly string[] }
  /** expireSession: the locks it released, in release order. */
  | { readonly type: "sessionExpired"; readonly released: readonly string[] }
  /** acquire (now, or earlier for the same session), or cancelWait after the grant. */
  | { readonly type: "granted"; readonly token: number }
  /** acquire with wait: the session waits in the lock's FIFO queue. */
  | { readonly type: "queued"; readonly lock: string }
  /** acquire without wait: another session holds the lock. */
  | { readonly type: "notAcquired" }
  /** release. */
  | { readonly type: "released" }
  /** cancelWait: the wait was withdrawn. */
  | { readonly type: "waitCancelled" }
  /** cancelWait: the session neither waits for nor holds the lock. */
  | { readonly type: "notWaiting" }
  | ErrorResult;

/** A waiter granted as a side effect of a command (a release, close or expiry). */
export interface Grant {
  readonly sessionId: number;
  readonly lock: string;
  /** The request id of the acquire that queued the wait. */
  readonly requestId: number;
  readonly token: number;
}

/** A wait withdrawn because its session ended. */
export interface DroppedWait {
  readonly lock: string;
  /** The request id of the acquire that queued the wait. */
  readonly requestId: number;
}

/** A session ended by a command. */
export interface EndedSession {
  readonly sessionId: number;
  readonly reason: "closed" | "expired";
  /** Locks it held, in release order (ascending token). */
  readonly released: readonly string[];
  /** Waits it had; the server answers their pending acquires with SESSION_EXPIRED. */
  readonly droppedWaits: readonly DroppedWait[];
}

/** Everything one applied entry produced. */
export interface ApplyOutcome {
  /** The Raft index of the entry. */
  readonly index: number;
  /** The command's own result. */
  readonly result: CommandResult;
  /** True when `result` was replayed from the dedupe table and nothing changed. */
  readonly duplicate: boolean;
  /**
   * Grants for other sessions' waits caused by this entry, in grant order (tokens
   * ascending). The server answers the pending acquires of each `(sessionId, lock)`.
   */
  readonly grants: readonly Grant[];
  /** Sessions this entry ended (close or expiry). */
  readonly endedSessions: readonly EndedSession[];
}

/** Builds an error result. */
export function errorResult(reason: LockErrorReason, message: string): ErrorResult {
  return { type: "error", reason, message };
}

/**
 * The typed error for an error result, or null for any other result.
 *
 * @example
 * ```ts
 * const error = resultError(outcome.result);
 * if (error !== null) throw error; // e.g. NotHolderError with reason NOT_HOLDER
 * ```
 */
export function resultError(result: CommandResult): DlockError | null {
  if (result.type !== "error") return null;
  switch (result.reason) {
    case "SESSION_EXPIRED":
      return new SessionExpiredError(result.message);
    case "NOT_HOLDER":
      return new NotHolderError(result.message);
    case "INVALID_ARGUMENT":
      return new InvalidArgumentError(result.message);
    case "RESOURCE_EXHAUSTED":
      return new ResourceExhaustedError(result.message);
    case "CANCELLED":
      return new DlockError("CANCELLED", result.message);
  }
}

/** Shared immutable results without fields (they save memory in dedupe tables). */
export const notAcquiredResult: CommandResult = Object.freeze({ type: "notAcquired" });
/** See {@link notAcquiredResult}. */
export const releasedResult: CommandResult = Object.freeze({ type: "released" });
/** See {@link notAcquiredResult}. */
export const waitCancelledResult: CommandResult = Object.freeze({ type: "waitCancelled" });
/** See {@link notAcquiredResult}. */
export const notWaitingResult: CommandResult = Object.freeze({ type: "notWaiting" });
