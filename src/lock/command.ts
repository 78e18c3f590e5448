/**
 * Commands of the lock state machine: what the leader proposes and every server
 * applies from the Raft log, in the same order.
 *
 * Each command carries `nowMs`, the leader's clock when it proposed the command;
 * replicas never read their own clocks. Commands that change state on behalf of a
 * client carry `(sessionId, requestId)` for exactly-once retries.
 *
 * Wire format (version 1), all integers unsigned LEB128 varints, strings a varint
 * byte length followed by UTF-8:
 *
 * ```
 * byte 0: format version (1)    byte 1: command tag    then: nowMs, then per tag:
 * 1 openSession    clientName, ttlMs, openKey
 * 2 closeSession   sessionId, requestId
 * 3 acquire        sessionId, requestId, lock, wait (one byte, 0 or 1)
 * 4 release        sessionId, requestId, lock, token (0 = any token)
 * 5 cancelWait     sessionId, requestId, lock
 * 6 expireSession  sessionId
 * ```
 *
 * A typical acquire is about 20 bytes. Decoding validates everything and rejects
 * trailing bytes, so a malformed entry becomes a deterministic error result on every
 * replica (see {@link LockStateMachine.applyEncoded}).
 *
 * @module
 */

import { InvalidArgumentError } from "../errors.ts";
import { limits } from "../limits.ts";
import { ByteReader, ByteWriter, DecodeError } from "./_codec.ts";
import {
  clientNameError,
  isNonNegativeInteger,
  isPositiveId,
  lockNameError,
  openKeyError,
  resolveTtlMs,
} from "./validation.ts";

/** Opens a session. Its id is the Raft index of the entry. Deduplicated by `openKey`. */
export interface OpenSessionCommand {
  readonly type: "openSession";
  readonly nowMs: number;
  readonly clientName: string;
  /** 0 means the default ({@link limits.sessionTtlMsDefault}). */
  readonly ttlMs: number;
  /**
   * Client-chosen unique key (a UUID); "" disables deduplication of the open. An open
   * with the key of a live or recently ended session returns that session (whatever
   * its other fields say); the client then learns from SESSION_EXPIRED if it ended.
   */
  readonly openKey: string;
}

/** Closes a session: releases its locks, drops its waits, grants the next waiters. */
export interface CloseSessionCommand {
  readonly type: "closeSession";
  readonly nowMs: number;
  readonly sessionId: number;
  readonly requestId: number;
}

/** Acquires an exclusive lock; `wait: false` is a try-acquire. */
export interface AcquireCommand {
  readonly type: "acquire";
  readonly nowMs: number;
  readonly sessionId: number;
  readonly lock: string;
  readonly requestId: number;
  readonly wait: boolean;
}

/** Releases a held lock; with `token`, only if the grant has that token. */
export interface ReleaseCommand {
  readonly type: "release";
  readonly nowMs: number;
  readonly sessionId: number;
  readonly lock: string;
  readonly requestId: number;
  /** Absent or 0: release whatever grant the session holds. */
  readonly token?: number;
}

/**
 * Withdraws the session's wait on `lock` (a blocking acquire timed out or was
 * cancelled). `requestId` is the id of the acquire being withdrawn; it is not a new
 * request id. A session has at most one wait per lock, and this withdraws it
 * whichever acquire created it.
 */
export interface CancelWaitCommand {
  readonly type: "cancelWait";
  readonly nowMs: number;
  readonly sessionId: number;
  readonly lock: string;
  readonly requestId: number;
}

/** Proposed by the leader when a session's TTL passed without a keepalive; acts like close. */
export interface ExpireSessionCommand {
  readonly type: "expireSession";
  readonly nowMs: number;
  readonly sessionId: number;
}

/** Every command of the lock state machine. */
export type LockCommand =
  | OpenSessionCommand
  | CloseSessionCommand
  | AcquireCommand
  | ReleaseCommand
  | CancelWaitCommand
  | ExpireSessionCommand;

/** The `type` of a command. */
export type LockCommandType = LockCommand["type"];

const formatVersion = 1;

const tagByType: Record<LockCommandType, number> = {
  openSession: 1,
  closeSession: 2,
  acquire: 3,
  release: 4,
  cancelWait: 5,
  expireSession: 6,
};

/**
 * Encodes a command for a Raft log entry.
 *
 * The caller (the leader) should run {@link validateCommand} first to refuse bad
 * client input early; encoding checks only what the format needs.
 *
 * @throws {InvalidArgumentError} when a number is not a non-negative safe integer, a
 * string field is not a string or not well-formed Unicode, or the encoding exceeds {@link limits.commandBytesMax}.
 *
 * @example
 * ```ts
 * const data = encodeCommand({ type: "acquire", nowMs: 1, sessionId: 3, lock: "a", requestId: 1, wait: true });
 * decodeCommand(data); // the same command
 * ```
 */
export function encodeCommand(command: LockCommand): Uint8Array {
  const shape = commandShapeError(command, false);
  if (shape !== null) throw new InvalidArgumentError(`Cannot encode the command: ${shape}`);
  // UTF-8 cannot carry lone surrogates; encoding would silently replace them.
  for (const field of ["clientName", "openKey", "lock"] as const) {
    const value = (command as unknown as Record<string, unknown>)[field];
    if (typeof value === "string" && !value.isWellFormed()) {
      throw new InvalidArgumentError(
        `Cannot encode the command as its field ${field} is not well-formed Unicode (lone surrogate)`,
      );
    }
  }
  const writer = new ByteWriter(32);
  writer.byte(formatVersion);
  writer.byte(tagByType[command.type]);
  writer.varint(command.nowMs);
  switch (command.type) {
    case "openSession":
      writer.string(command.clientName);
      writer.varint(command.ttlMs);
      writer.string(command.openKey);
      break;
    case "closeSession":
      writer.varint(command.sessionId);
      writer.varint(command.requestId);
      break;
    case "acquire":
      writer.varint(command.sessionId);
      writer.varint(command.requestId);
      writer.string(command.lock);
      writer.byte(command.wait ? 1 : 0);
      break;
    case "release":
      writer.varint(command.sessionId);
      writer.varint(command.requestId);
      writer.string(command.lock);
      writer.varint(command.token ?? 0);
      break;
    case "cancelWait":
      writer.varint(command.sessionId);
      writer.varint(command.requestId);
      writer.string(command.lock);
      break;
    case "expireSession":
      writer.varint(command.sessionId);
      break;
  }
  if (writer.length > limits.commandBytesMax) {
    throw new InvalidArgumentError(
      `Cannot encode the command as it is larger than ${limits.commandBytesMax} bytes: received ${writer.length} bytes`,
    );
  }
  return writer.finish();
}

/** Result of {@link decodeCommand}: the command, or why the bytes are malformed. */
export type DecodeResult =
  | { readonly ok: true; readonly command: LockCommand }
  | { readonly ok: false; readonly message: string };

/**
 * Decodes a command written by {@link encodeCommand}. Never throws: malformed input
 * (unknown version or tag, truncated, trailing bytes, invalid UTF-8, integers above
 * 2^53 - 1, oversized) yields `{ ok: false, message }`.
 */
export function decodeCommand(data: Uint8Array): DecodeResult {
  if (data.length > limits.commandBytesMax) {
    return {
      ok: false,
      message:
        `Cannot decode the command as it is larger than ${limits.commandBytesMax} bytes: received ${data.length} bytes`,
    };
  }
  try {
    const command = readCommand(new ByteReader(data));
    return { ok: true, command };
  } catch (error) {
    if (error instanceof DecodeError) {
      return { ok: false, message: `Cannot decode the command: ${error.message}` };
    }
    throw error;
  }
}

function readCommand(reader: ByteReader): LockCommand {
  const version = reader.byte();
  if (version !== formatVersion) {
    throw new DecodeError(`unknown format version ${version}, expected ${formatVersion}`);
  }
  const tag = reader.byte();
  const nowMs = reader.varint();
  const stringBytesMax = limits.commandBytesMax;
  let command: LockCommand;
  switch (tag) {
    case 1: {
      const clientName = reader.string(stringBytesMax);
      const ttlMs = reader.varint();
      const openKey = reader.string(stringBytesMax);
      command = { type: "openSession", nowMs, clientName, ttlMs, openKey };
      break;
    }
    case 2: {
      const sessionId = reader.varint();
      const requestId = reader.varint();
      command = { type: "closeSession", nowMs, sessionId, requestId };
      break;
    }
    case 3: {
      const sessionId = reader.varint();
      const requestId = reader.varint();
      const lock = reader.string(stringBytesMax);
      const wait = reader.boolean();
      command = { type: "acquire", nowMs, sessionId, lock, requestId, wait };
      break;
    }
    case 4: {
      const sessionId = reader.varint();
      const requestId = reader.varint();
      const lock = reader.string(stringBytesMax);
      const token = reader.varint();
      command = token === 0
        ? { type: "release", nowMs, sessionId, lock, requestId }
        : { type: "release", nowMs, sessionId, lock, requestId, token };
      break;
    }
    case 5: {
      const sessionId = reader.varint();
      const requestId = reader.varint();
      const lock = reader.string(stringBytesMax);
      command = { type: "cancelWait", nowMs, sessionId, lock, requestId };
      break;
    }
    case 6: {
      const sessionId = reader.varint();
      command = { type: "expireSession", nowMs, sessionId };
      break;
    }
    default:
      throw new DecodeError(`unknown command tag ${tag}`);
  }
  if (!reader.done) throw new DecodeError(`trailing bytes after byte ${reader.offset}`);
  return command;
}

/**
 * Checks everything about a command that does not depend on state: field types,
 * ids ≥ 1, names, TTL range. The leader may call this before proposing to refuse bad
 * input without a log entry; the state machine checks the same things when applying.
 *
 * @returns an INVALID_ARGUMENT message, or null when the command is well-formed.
 */
export function validateCommand(command: unknown): string | null {
  const shape = commandShapeError(command, true);
  if (shape !== null) return shape;
  const typed = command as LockCommand;
  switch (typed.type) {
    case "openSession": {
      const ttl = resolveTtlMs(typed.ttlMs);
      if (typeof ttl === "string") return ttl;
      return clientNameError(typed.clientName) ?? openKeyError(typed.openKey);
    }
    case "acquire":
    case "release":
    case "cancelWait":
      return lockNameError(typed.lock);
    case "closeSession":
    case "expireSession":
      return null;
  }
}

/**
 * Checks field presence and types. With `strictIds`, ids must be ≥ 1 (a session or
 * request id of 0 never exists); without, any non-negative safe integer encodes.
 * @returns a message, or null when the shape is right.
 */
export function commandShapeError(command: unknown, strictIds: boolean): string | null {
  if (typeof command !== "object" || command === null) {
    return `Cannot use the command as it is not an object: received ${String(command)}`;
  }
  const fields = command as Record<string, unknown>;
  const type = fields["type"];
  if (typeof type !== "string" || !Object.hasOwn(tagByType, type)) {
    return `Cannot use the command as its type is unknown: received ${String(type)}`;
  }
  const id = strictIds ? isPositiveId : isNonNegativeInteger;
  const checks: [boolean, string][] = [[isNonNegativeInteger(fields["nowMs"]), "nowMs"]];
  switch (type as LockCommandType) {
    case "openSession":
      checks.push(
        [typeof fields["clientName"] === "string", "clientName"],
        [isNonNegativeInteger(fields["ttlMs"]), "ttlMs"],
        [typeof fields["openKey"] === "string", "openKey"],
      );
      break;
    case "closeSession":
      checks.push([id(fields["sessionId"]), "sessionId"], [id(fields["requestId"]), "requestId"]);
      break;
    case "acquire":
      checks.push(
        [id(fields["sessionId"]), "sessionId"],
        [id(fields["requestId"]), "requestId"],
        [typeof fields["lock"] === "string", "lock"],
        [typeof fields["wait"] === "boolean", "wait"],
      );
      break;
    case "release":
      checks.push(
        [id(fields["sessionId"]), "sessionId"],
        [id(fields["requestId"]), "requestId"],
        [typeof fields["lock"] === "string", "lock"],
        [fields["token"] === undefined || isNonNegativeInteger(fields["token"]), "token"],
      );
      break;
    case "cancelWait":
      checks.push(
        [id(fields["sessionId"]), "sessionId"],
        [id(fields["requestId"]), "requestId"],
        [typeof fields["lock"] === "string", "lock"],
      );
      break;
    case "expireSession":
      checks.push([id(fields["sessionId"]), "sessionId"]);
      break;
  }
  for (const [holds, name] of checks) {
    if (!holds) {
      return `Cannot use the ${type} command as its field ${name} is missing or out of range: received ${
        String(fields[name])
      }`;
    }
  }
  return null;
}
