/**
 * Conversion between Raft {@link Message}s and the plain objects of
 * `proto/dlock/v1/peer.proto` as loaded by @grpc/proto-loader (keepCase, longs as
 * numbers, enums as strings). Pure functions, tested by round trip.
 *
 * @module
 */
import type { Entry, EntryKind, Message, MessageType, Snapshot } from "../raft/types.ts";

/** A proto `Entry`. */
export interface WireEntry {
  term?: number;
  index?: number;
  kind?: string;
  data?: Uint8Array;
}
/** A proto `Snapshot`. */
export interface WireSnapshot {
  meta?: { index?: number; term?: number; voters?: string[] } | null;
  data?: Uint8Array;
}
/** A proto `RaftMessage`. */
export interface WireMessage {
  type?: string;
  from?: string;
  to?: string;
  term?: number;
  index?: number;
  log_term?: number;
  entries?: WireEntry[];
  commit?: number;
  reject?: boolean;
  reject_hint?: number;
  snapshot?: WireSnapshot | null;
  context?: string;
  snapshot_chunked?: boolean;
}

const typeToWire: Record<MessageType, string> = {
  preVote: "PRE_VOTE",
  preVoteResp: "PRE_VOTE_RESP",
  vote: "VOTE",
  voteResp: "VOTE_RESP",
  append: "APPEND",
  appendResp: "APPEND_RESP",
  heartbeat: "HEARTBEAT",
  heartbeatResp: "HEARTBEAT_RESP",
  snapshot: "SNAPSHOT",
  timeoutNow: "TIMEOUT_NOW",
  readIndex: "READ_INDEX",
  readIndexResp: "READ_INDEX_RESP",
};
const typeFromWire = new Map<string, MessageType>(
  Object.entries(typeToWire).map(([type, wire]) => [wire, type as MessageType]),
);
const kindToWire: Record<EntryKind, string> = { normal: "NORMAL", noop: "NOOP", config: "CONFIG" };
const kindFromWire = new Map<string, EntryKind>([
  ["NORMAL", "normal"],
  ["NOOP", "noop"],
  ["CONFIG", "config"],
]);

/** Thrown when a received message cannot be decoded (a peer of another version, corruption). */
export class DecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DecodeError";
  }
}

/** Encodes one entry. */
export function encodeEntry(entry: Entry): WireEntry {
  return { term: entry.term, index: entry.index, kind: kindToWire[entry.kind], data: entry.data };
}

/** Encodes one message; `withoutSnapshotData` leaves the snapshot data out (it is chunked). */
export function encodeMessage(message: Message, withoutSnapshotData = false): WireMessage {
  const wire: WireMessage = {
    type: typeToWire[message.type],
    from: message.from,
    to: message.to,
    term: message.term,
  };
  if (message.index !== undefined) wire.index = message.index;
  if (message.logTerm !== undefined) wire.log_term = message.logTerm;
  if (message.entries !== undefined && message.entries.length > 0) {
    wire.entries = message.entries.map(encodeEntry);
  }
  if (message.commit !== undefined) wire.commit = message.commit;
  if (message.reject !== undefined) wire.reject = message.reject;
  if (message.rejectHint !== undefined) wire.reject_hint = message.rejectHint;
  if (message.snapshot !== undefined) {
    wire.snapshot = {
      meta: {
        index: message.snapshot.meta.index,
        term: message.snapshot.meta.term,
        voters: [...message.snapshot.meta.voters],
      },
      data: withoutSnapshotData ? new Uint8Array(0) : message.snapshot.data,
    };
    if (withoutSnapshotData) wire.snapshot_chunked = true;
  }
  if (message.context !== undefined) wire.context = message.context;
  return wire;
}

function bytes(value: Uint8Array | undefined): Uint8Array {
  if (value === undefined) return new Uint8Array(0);
  // Buffers from the decoder are views into a shared pool: copy into a plain array so
  // storage and the state machine hold exactly the entry's bytes.
  return value.constructor === Uint8Array ? value : new Uint8Array(value);
}

function decodeEntry(wire: WireEntry): Entry {
  const kind = kindFromWire.get(wire.kind ?? "");
  if (kind === undefined) throw new DecodeError(`Cannot decode entry as its kind is ${wire.kind}`);
  return { term: wire.term ?? 0, index: wire.index ?? 0, kind, data: bytes(wire.data) };
}

/** Decodes the snapshot of a message, with `data` replacing the carried data when given. */
export function decodeSnapshot(wire: WireSnapshot, data?: Uint8Array): Snapshot {
  return {
    meta: {
      index: wire.meta?.index ?? 0,
      term: wire.meta?.term ?? 0,
      voters: [...(wire.meta?.voters ?? [])],
    },
    data: data ?? bytes(wire.data),
  };
}

/**
 * Decodes one message.
 * @throws {DecodeError} when the type or an entry kind is unknown, or a field is missing.
 */
export function decodeMessage(wire: WireMessage, snapshotData?: Uint8Array): Message {
  const type = typeFromWire.get(wire.type ?? "");
  if (type === undefined) {
    throw new DecodeError(`Cannot decode message as its type is ${wire.type}`);
  }
  if (!wire.from || !wire.to) throw new DecodeError("Cannot decode message as from/to is missing");
  const message: {
    -readonly [K in keyof Message]: Message[K];
  } = { type, from: wire.from, to: wire.to, term: wire.term ?? 0 };
  if (wire.index !== undefined && wire.index !== null) message.index = wire.index;
  if (wire.log_term !== undefined && wire.log_term !== null) message.logTerm = wire.log_term;
  if (wire.entries !== undefined && wire.entries !== null && wire.entries.length > 0) {
    message.entries = wire.entries.map(decodeEntry);
  } else if (type === "append") {
    message.entries = [];
  }
  if (wire.commit !== undefined && wire.commit !== null) message.commit = wire.commit;
  if (wire.reject !== undefined && wire.reject !== null) message.reject = wire.reject;
  if (wire.reject_hint !== undefined && wire.reject_hint !== null) {
    message.rejectHint = wire.reject_hint;
  }
  if (wire.snapshot !== undefined && wire.snapshot !== null) {
    message.snapshot = decodeSnapshot(wire.snapshot, snapshotData);
  }
  if (wire.context !== undefined && wire.context !== null) message.context = wire.context;
  return message;
}
