/**
 * The replicated lock state machine (public surface of `src/lock/`).
 *
 * Pure and deterministic: applied on every server from the Raft log in the same
 * order, it owns sessions, named exclusive locks with FIFO queues, fencing tokens,
 * exactly-once request deduplication and snapshots. See `state_machine.ts` for the
 * token rule and the dedupe rules, `command.ts` for the commands and their encoding.
 *
 * ## Duties of the server (the caller)
 *
 * - Apply every committed `normal` entry with `applyEncoded(entry.index, entry.data)`,
 *   in log order, on every server (skip noop/config entries: index gaps are fine).
 *   Before proposing, the leader may refuse bad input with {@link validateCommand};
 *   `encodeCommand` throws `InvalidArgumentError` for what it cannot encode.
 * - Answer the proposer with `outcome.result` ({@link resultError} gives the typed
 *   error). A `queued` acquire stays pending, keyed by `(sessionId, lock)`.
 * - For each of `outcome.grants`, answer the pending acquires of `(sessionId, lock)`
 *   with the token. For each of `outcome.endedSessions`, answer that session's
 *   pending acquires with SESSION_EXPIRED and stop its expiry timer.
 * - When a blocking acquire times out or is cancelled, propose `cancelWait`; its
 *   result `granted` means the grant won the race (answer with the grant), otherwise
 *   answer TIMEOUT / CANCELLED.
 * - keepAlive is not a command: the leader keeps deadlines in memory and proposes
 *   `expireSession` when a TTL passes. A new leader restarts a full TTL for every
 *   session from {@link LockStateMachine.sessions} (`ttlMs`).
 * - `snapshot()` captures the state at `lastApplied` (log compaction);
 *   `LockStateMachine.restore` brings it back (and throws `CorruptSnapshotError`).
 *   Every replica must use the same {@link LockStateMachineOptions}.
 *
 * @example
 * ```ts
 * import { encodeCommand, LockStateMachine } from "./mod.ts";
 * const machine = new LockStateMachine();
 * machine.applyEncoded(1, encodeCommand({ type: "openSession", nowMs: 0, clientName: "a", ttlMs: 0, openKey: "" }));
 * const outcome = machine.applyEncoded(2, encodeCommand({ type: "acquire", nowMs: 0, sessionId: 1, lock: "x", requestId: 1, wait: true }));
 * // outcome.result: { type: "granted", token: 2 }
 * ```
 *
 * @module
 */

export {
  type AcquireCommand,
  type CancelWaitCommand,
  type CloseSessionCommand,
  decodeCommand,
  type DecodeResult,
  encodeCommand,
  type ExpireSessionCommand,
  type LockCommand,
  type LockCommandType,
  type OpenSessionCommand,
  type ReleaseCommand,
  validateCommand,
} from "./command.ts";
export {
  type ApplyOutcome,
  type CommandResult,
  type DroppedWait,
  type EndedSession,
  type ErrorResult,
  type Grant,
  type LockErrorReason,
  resultError,
} from "./result.ts";
export {
  endedSessionsRememberedMaxDefault,
  type HolderInfo,
  type LockInfo,
  type LockStateCounts,
  LockStateMachine,
  type LockStateMachineLimits,
  type LockStateMachineOptions,
  type SessionInfo,
  type WaiterInfo,
} from "./state_machine.ts";
export { CorruptSnapshotError } from "./_snapshot.ts";
export type { LockMode } from "./_state.ts";
export { lockNameError, resolveTtlMs } from "./validation.ts";
