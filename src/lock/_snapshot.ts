/**
 * Binary snapshot of the lock state machine.
 *
 * Layout (version 1; integers are unsigned LEB128 varints, strings a varint byte
 * length then UTF-8, as in `_codec.ts`):
 *
 * ```
 * "DLKS" version(1 byte) lastApplied lastToken
 * sessionCount { id clientName ttlMs openKey openedAtMs dedupeFloor
 *                dedupeCount { requestId result } }
 * lockCount    { name holderSessionId token holderRequestId grantedAtMs
 *                waiterCount { sessionId requestId mode(1 byte) queuedAtMs } }
 * endedCount   { sessionId reason(1 byte) openKey ttlMs closeRequestId result }
 * crc32 of all preceding bytes (4 bytes, little endian)
 * ```
 *
 * Maps are written in iteration order and rebuilt in the same order, so a restored
 * machine behaves exactly like the original. Derived indexes (per-session lock sets,
 * open keys, waiter count) are not stored; they are rebuilt and cross-checked.
 *
 * @module
 */

import { limits } from "../limits.ts";
import { ByteReader, ByteWriter, crc32, DecodeError } from "./_codec.ts";
import {
  emptyState,
  type EndedSessionRecord,
  LockState,
  type MachineState,
  newSession,
  type Waiter,
} from "./_state.ts";
import {
  type CommandResult,
  type LockErrorReason,
  notAcquiredResult,
  notWaitingResult,
  releasedResult,
  waitCancelledResult,
} from "./result.ts";
import { clientNameError, lockNameError, openKeyError } from "./validation.ts";

/** Thrown by {@link decodeState} (and `LockStateMachine.restore`) for corrupt data. */
export class CorruptSnapshotError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CorruptSnapshotError";
  }
}

const magic = [0x44, 0x4c, 0x4b, 0x53]; // "DLKS"
const formatVersion = 1;
const errorReasons: readonly LockErrorReason[] = [
  "SESSION_EXPIRED",
  "NOT_HOLDER",
  "INVALID_ARGUMENT",
  "RESOURCE_EXHAUSTED",
  "CANCELLED",
];
/** Longest string a snapshot may hold (error messages, names). */
const snapshotStringBytesMax = limits.commandBytesMax;

/** Encodes the whole state. */
export function encodeState(state: MachineState): Uint8Array {
  const writer = new ByteWriter(64 + state.locks.size * 32 + state.sessions.size * 48);
  for (const byte of magic) writer.byte(byte);
  writer.byte(formatVersion);
  writer.varint(state.lastApplied);
  writer.varint(state.lastToken);
  writer.varint(state.sessions.size);
  for (const session of state.sessions.values()) {
    writer.varint(session.id);
    writer.string(session.clientName);
    writer.varint(session.ttlMs);
    writer.string(session.openKey);
    writer.varint(session.openedAtMs);
    writer.varint(session.dedupeFloor);
    writer.varint(session.dedupe.size);
    for (const [requestId, result] of session.dedupe) {
      writer.varint(requestId);
      writeResult(writer, result);
    }
  }
  writer.varint(state.locks.size);
  for (const [name, lock] of state.locks) {
    writer.string(name);
    writer.varint(lock.holderSessionId);
    writer.varint(lock.token);
    writer.varint(lock.holderRequestId);
    writer.varint(lock.grantedAtMs);
    const waiters = lock.waiters;
    writer.varint(waiters === null ? 0 : waiters.size);
    if (waiters !== null) {
      for (const waiter of waiters.values()) {
        writer.varint(waiter.sessionId);
        writer.varint(waiter.requestId);
        writer.byte(0); // mode: 0 = exclusive
        writer.varint(waiter.queuedAtMs);
      }
    }
  }
  writer.varint(state.ended.size);
  for (const record of state.ended.values()) {
    writer.varint(record.sessionId);
    writer.byte(record.reason === "closed" ? 0 : 1);
    writer.string(record.openKey);
    writer.varint(record.ttlMs);
    writer.varint(record.closeRequestId);
    writeResult(writer, record.result);
  }
  writer.uint32(crc32(writer.view()));
  return writer.finish();
}

function writeResult(writer: ByteWriter, result: CommandResult): void {
  switch (result.type) {
    case "sessionOpened":
      writer.byte(1);
      writer.varint(result.sessionId);
      writer.varint(result.ttlMs);
      return;
    case "sessionClosed":
    case "sessionExpired":
      writer.byte(result.type === "sessionClosed" ? 2 : 3);
      writer.varint(result.released.length);
      for (const name of result.released) writer.string(name);
      return;
    case "granted":
      writer.byte(4);
      writer.varint(result.token);
      return;
    case "queued":
      writer.byte(5);
      writer.string(result.lock);
      return;
    case "notAcquired":
      writer.byte(6);
      return;
    case "released":
      writer.byte(7);
      return;
    case "waitCancelled":
      writer.byte(8);
      return;
    case "notWaiting":
      writer.byte(9);
      return;
    case "error":
      writer.byte(10);
      writer.byte(errorReasons.indexOf(result.reason));
      writer.string(result.message);
      return;
  }
}

/**
 * Decodes and cross-checks a snapshot.
 * @throws {CorruptSnapshotError} when the data is truncated, has a bad checksum or
 * version, or describes an inconsistent state.
 */
export function decodeState(data: Uint8Array): MachineState {
  if (data.length < magic.length + 1 + 4) {
    throw new CorruptSnapshotError(
      `Cannot restore the lock state as the snapshot is too short: received ${data.length} bytes`,
    );
  }
  for (let i = 0; i < magic.length; i++) {
    if (data[i] !== magic[i]) {
      throw new CorruptSnapshotError(
        "Cannot restore the lock state as the data is not a lock snapshot (bad magic)",
      );
    }
  }
  const bodyLength = data.length - 4;
  const stored = new ByteReader(data.subarray(bodyLength)).uint32();
  const computed = crc32(data.subarray(0, bodyLength));
  if (stored !== computed) {
    throw new CorruptSnapshotError(
      `Cannot restore the lock state as the snapshot checksum does not match: stored ${stored}, computed ${computed}`,
    );
  }
  const reader = new ByteReader(data, bodyLength);
  try {
    const state = readState(reader);
    if (!reader.done) throw new DecodeError(`trailing bytes at byte ${reader.offset}`);
    return state;
  } catch (error) {
    if (error instanceof DecodeError) {
      throw new CorruptSnapshotError(`Cannot restore the lock state: ${error.message}`, {
        cause: error,
      });
    }
    throw error;
  }
}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new DecodeError(message);
}

function readState(reader: ByteReader): MachineState {
  reader.byte();
  reader.byte();
  reader.byte();
  reader.byte(); // magic, checked by the caller
  const version = reader.byte();
  check(version === formatVersion, `unknown snapshot version ${version}`);
  const state = emptyState();
  state.lastApplied = reader.varint();
  state.lastToken = reader.varint();
  readSessions(reader, state);
  readLocks(reader, state);
  readEnded(reader, state);
  return state;
}

function readSessions(reader: ByteReader, state: MachineState): void {
  const count = reader.varint();
  for (let i = 0; i < count; i++) {
    const id = reader.varint();
    const clientName = reader.string(snapshotStringBytesMax);
    const ttlMs = reader.varint();
    const openKey = reader.string(snapshotStringBytesMax);
    const openedAtMs = reader.varint();
    check(id >= 1 && id <= state.lastApplied, `session id ${id} outside 1..lastApplied`);
    check(!state.sessions.has(id), `session ${id} appears twice`);
    check(clientNameError(clientName) === null, `session ${id} has an invalid client name`);
    check(openKeyError(openKey) === null, `session ${id} has an invalid open key`);
    check(
      ttlMs >= limits.sessionTtlMsMin && ttlMs <= limits.sessionTtlMsMax,
      `session ${id} has TTL ${ttlMs} ms out of range`,
    );
    const session = newSession({ id, clientName, ttlMs, openKey, openedAtMs });
    session.dedupeFloor = reader.varint();
    const dedupeCount = reader.varint();
    for (let j = 0; j < dedupeCount; j++) {
      // An id at or below the floor may still be remembered: ids reach the log out of
      // order when a client retries one on a new leader, and eviction goes by insertion
      // order (see LockStateMachine #remember). So there is no order check here.
      const requestId = reader.varint();
      check(!session.dedupe.has(requestId), `session ${id} remembers request ${requestId} twice`);
      session.dedupe.set(requestId, readResult(reader));
    }
    state.sessions.set(id, session);
    if (openKey !== "") {
      check(!state.openKeys.has(openKey), `open key of session ${id} is used twice`);
      state.openKeys.set(openKey, id);
    }
  }
}

function readLocks(reader: ByteReader, state: MachineState): void {
  const count = reader.varint();
  const tokens = new Set<number>();
  for (let i = 0; i < count; i++) {
    const name = reader.string(snapshotStringBytesMax);
    check(lockNameError(name) === null, `lock ${JSON.stringify(name)} has an invalid name`);
    check(!state.locks.has(name), `lock ${JSON.stringify(name)} appears twice`);
    const holderSessionId = reader.varint();
    const token = reader.varint();
    const holderRequestId = reader.varint();
    const grantedAtMs = reader.varint();
    const holder = state.sessions.get(holderSessionId);
    check(
      holder !== undefined,
      `lock ${JSON.stringify(name)} is held by unknown session ${holderSessionId}`,
    );
    check(
      token >= 1 && token <= state.lastToken,
      `lock ${JSON.stringify(name)} has token ${token} outside 1..lastToken`,
    );
    check(!tokens.has(token), `token ${token} is held twice`);
    tokens.add(token);
    const lock = new LockState(holderSessionId, token, holderRequestId, grantedAtMs);
    holder.held.add(name);
    const waiterCount = reader.varint();
    if (waiterCount > 0) lock.waiters = new Map();
    for (let j = 0; j < waiterCount; j++) {
      const waiter = readWaiter(reader);
      const session = state.sessions.get(waiter.sessionId);
      check(
        session !== undefined,
        `lock ${JSON.stringify(name)} has a waiter of unknown session ${waiter.sessionId}`,
      );
      check(
        waiter.sessionId !== holderSessionId,
        `lock ${JSON.stringify(name)} has its holder as a waiter`,
      );
      check(
        !session.waiting.has(name),
        `session ${waiter.sessionId} waits twice for ${JSON.stringify(name)}`,
      );
      session.waiting.add(name);
      lock.waiters?.set(waiter.sessionId, waiter);
      state.waiterCount++;
    }
    state.locks.set(name, lock);
  }
}

function readWaiter(reader: ByteReader): Waiter {
  const sessionId = reader.varint();
  const requestId = reader.varint();
  const mode = reader.byte();
  check(mode === 0, `unknown lock mode ${mode}`);
  const queuedAtMs = reader.varint();
  return { sessionId, requestId, mode: "exclusive", queuedAtMs };
}

function readEnded(reader: ByteReader, state: MachineState): void {
  const count = reader.varint();
  for (let i = 0; i < count; i++) {
    const sessionId = reader.varint();
    const reasonByte = reader.byte();
    check(reasonByte <= 1, `ended session ${sessionId} has unknown reason ${reasonByte}`);
    const openKey = reader.string(snapshotStringBytesMax);
    const ttlMs = reader.varint();
    const closeRequestId = reader.varint();
    const result = readResult(reader);
    check(!state.sessions.has(sessionId), `session ${sessionId} is both open and ended`);
    check(!state.ended.has(sessionId), `ended session ${sessionId} appears twice`);
    const record: EndedSessionRecord = {
      sessionId,
      reason: reasonByte === 0 ? "closed" : "expired",
      openKey,
      ttlMs,
      closeRequestId,
      result,
    };
    state.ended.set(sessionId, record);
    if (openKey !== "") state.endedOpenKeys.set(openKey, sessionId);
  }
}

function readResult(reader: ByteReader): CommandResult {
  const tag = reader.byte();
  switch (tag) {
    case 1: {
      const sessionId = reader.varint();
      const ttlMs = reader.varint();
      return { type: "sessionOpened", sessionId, ttlMs };
    }
    case 2:
    case 3: {
      const count = reader.varint();
      const released: string[] = [];
      for (let i = 0; i < count; i++) released.push(reader.string(snapshotStringBytesMax));
      return { type: tag === 2 ? "sessionClosed" : "sessionExpired", released };
    }
    case 4:
      return { type: "granted", token: reader.varint() };
    case 5:
      return { type: "queued", lock: reader.string(snapshotStringBytesMax) };
    case 6:
      return notAcquiredResult;
    case 7:
      return releasedResult;
    case 8:
      return waitCancelledResult;
    case 9:
      return notWaitingResult;
    case 10: {
      const reason = errorReasons[reader.byte()];
      check(reason !== undefined, "unknown error reason");
      const message = reader.string(snapshotStringBytesMax);
      return { type: "error", reason, message };
    }
    default:
      throw new DecodeError(`unknown result tag ${tag}`);
  }
}
