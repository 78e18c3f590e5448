/**
 * Key layout and value encodings of the Raft store in Deno KV, with checks of the shape
 * of every value read back. Pure functions, no I/O.
 *
 * Keys (all sort by index, so a suffix or a prefix of the log is a key range):
 * - `["format"]` → {@link FormatStamp}
 * - `["hardState"]` → {@link StoredHardState}: the hard state and the log's last index
 * - `["snapshot"]` → {@link SnapshotRecord}: the current snapshot (meta + where its data is)
 * - `["snapshotChunk", id: bigint, chunk: number]` → `Uint8Array` (≤ 64 KiB each)
 * - `["log", firstIndex: bigint]` → a log segment: the entries firstIndex, firstIndex + 1, …
 *   encoded back to back (see {@link encodeSegments}), or the head of one entry too big to
 *   share a value
 * - `["log", firstIndex: bigint, part: number]` → overflow bytes of such a big entry
 *
 * @module
 */

import type { Entry, EntryKind, HardState, SnapshotMeta } from "../raft/types.ts";
import { invariant } from "./_invariant.ts";

/**
 * The on-disk format this build writes and reads. Version 1 stored one entry per key;
 * version 2 stores segments of consecutive entries per key. There is no in-place upgrade
 * (dlock is 0.x): a store of another version is refused.
 */
export const formatVersion = 2;

/** Deno KV limits, measured on Deno 2.9.6 (see kv_bench.ts and the module docs of mod.ts). */
export const kvLimits = {
  /** Largest value, bytes (`Value too large (max 65536 bytes)`). */
  valueBytesMax: 65_536,
  /** Mutations in one atomic commit (`Too many mutations (max 1000)`). */
  mutationsPerCommitMax: 1_000,
  /** Keys plus values of one atomic commit (`Total mutation size too large (max 819200 bytes)`). */
  commitBytesMax: 819_200,
  /** Keys of one atomic commit (80 KiB: found by testing, 738 keys of 111 bytes fit). */
  commitKeyBytesMax: 81_920,
} as const;

/** Largest entry data the store accepts (a lock command is at most 64 KiB). */
export const entryDataBytesMax = 512 * 1024;

export const formatKey: Deno.KvKey = ["format"];
export const hardStateKey: Deno.KvKey = ["hardState"];
export const snapshotKey: Deno.KvKey = ["snapshot"];
export const logPrefix = "log";
export const snapshotChunkPrefix = "snapshotChunk";

/** Key of the segment (head value) whose first entry is at `firstIndex`. */
export function logKey(firstIndex: number): Deno.KvKey {
  return [logPrefix, BigInt(firstIndex)];
}

/** Key of overflow part `part` (≥ 1) of the big entry at `index` (a segment of its own). */
export function logPartKey(index: number, part: number): Deno.KvKey {
  return [logPrefix, BigInt(index), part];
}

/** Key of chunk `chunk` of snapshot `id`. */
export function snapshotChunkKey(id: bigint, chunk: number): Deno.KvKey {
  return [snapshotChunkPrefix, id, chunk];
}

/** Identity of a store: written once at creation, checked at every open. */
export interface FormatStamp {
  readonly clusterId: string;
  readonly nodeId: string;
  readonly formatVersion: number;
}

/** The current snapshot: its meta and where and how its data is stored. */
export interface SnapshotRecord {
  /** Chunks live under `["snapshotChunk", id, …]`; a new snapshot gets a new id. */
  readonly id: bigint;
  readonly index: number;
  readonly term: number;
  readonly voters: readonly string[];
  readonly byteLength: number;
  readonly chunkCount: number;
  /** CRC-32 of the whole data. */
  readonly crc32: number;
}

// ---------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), table driven.

const crcTable: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
    table[byte] = crc >>> 0;
  }
  return table;
})();

/** Continues a CRC-32 over `bytes`; start with `crc32Start`, end with `crc32Finish`. */
export function crc32Update(crc: number, bytes: Uint8Array): number {
  let value = crc;
  for (let i = 0; i < bytes.length; i++) {
    value = crcTable[(value ^ bytes[i]!) & 0xff]! ^ (value >>> 8);
  }
  return value;
}
export const crc32Start = 0xffffffff;
/** Final value of a CRC-32 computed with {@link crc32Update}. */
export function crc32Finish(crc: number): number {
  return (crc ^ 0xffffffff) >>> 0;
}
/** CRC-32 of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  return crc32Finish(crc32Update(crc32Start, bytes));
}

// ---------------------------------------------------------------------------------------
// Entries.

const kindCodes: Readonly<Record<EntryKind, number>> = { normal: 0, noop: 1, config: 2 };
const kindsByCode: readonly EntryKind[] = ["normal", "noop", "config"];

/** kind (1) + term (8) + data length (4) + CRC-32 of kind, term, length and data (4). */
export const entryHeaderBytes = 17;

function writeUint53(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / 2 ** 32));
  view.setUint32(offset + 4, value >>> 0);
}

function readUint53(view: DataView, offset: number): number {
  return view.getUint32(offset) * 2 ** 32 + view.getUint32(offset + 4);
}

/** Bytes an entry takes in a segment: header and data. */
export function frameBytes(entry: Entry): number {
  return entryHeaderBytes + entry.data.length;
}

/**
 * Writes the header of `entry` at `offset` of `target`, and as much of its data as fits
 * (all of it unless the entry is bigger than one value).
 * @returns the offset after what was written.
 */
function writeFrame(target: Uint8Array, offset: number, entry: Entry): number {
  invariant(Number.isSafeInteger(entry.term) && entry.term >= 0, `bad term ${entry.term}`);
  invariant(
    entry.data.length <= entryDataBytesMax,
    `entry ${entry.index} has ${entry.data.length} bytes`,
  );
  const code = kindCodes[entry.kind];
  invariant(code !== undefined, `unknown entry kind ${String(entry.kind)}`);
  const view = new DataView(target.buffer, target.byteOffset + offset, entryHeaderBytes);
  view.setUint8(0, code);
  writeUint53(view, 1, entry.term);
  view.setUint32(9, entry.data.length);
  let crc = crc32Update(crc32Start, target.subarray(offset, offset + 13));
  crc = crc32Finish(crc32Update(crc, entry.data));
  view.setUint32(13, crc);
  const dataBytes = Math.min(entry.data.length, target.length - offset - entryHeaderBytes);
  target.set(entry.data.subarray(0, dataBytes), offset + entryHeaderBytes);
  return offset + entryHeaderBytes + dataBytes;
}

/**
 * Encodes an entry as a head value (header + the first bytes of data) and, if the data does
 * not fit in one KV value, overflow parts of at most 64 KiB each. The index is in the key.
 */
export function encodeEntry(entry: Entry): Uint8Array[] {
  const head = new Uint8Array(Math.min(frameBytes(entry), kvLimits.valueBytesMax));
  writeFrame(head, 0, entry);
  const values = [head];
  const headDataBytes = head.length - entryHeaderBytes;
  for (let offset = headDataBytes; offset < entry.data.length; offset += kvLimits.valueBytesMax) {
    values.push(entry.data.slice(offset, offset + kvLimits.valueBytesMax));
  }
  return values;
}

/** A log segment ready to store: entries `firstIndex` to `lastIndex`. */
export interface EncodedSegment {
  readonly firstIndex: number;
  readonly lastIndex: number;
  /** The head value (key `["log", firstIndex]`), then the overflow parts of a big entry. */
  readonly values: readonly Uint8Array[];
}

/**
 * Encodes consecutive entries as few segments as possible: entries packed back to back
 * (each as in {@link encodeEntry}) in values of at most 64 KiB, in order; an entry too big
 * to share a value (header and data over 64 KiB) is a segment of its own with overflow
 * parts.
 */
export function encodeSegments(entries: readonly Entry[]): EncodedSegment[] {
  const segments: EncodedSegment[] = [];
  let first = 0;
  while (first < entries.length) {
    const head = entries[first]!;
    if (frameBytes(head) > kvLimits.valueBytesMax) {
      segments.push({ firstIndex: head.index, lastIndex: head.index, values: encodeEntry(head) });
      first++;
      continue;
    }
    let bytes = 0;
    let end = first;
    for (; end < entries.length; end++) {
      const size = frameBytes(entries[end]!);
      if (bytes + size > kvLimits.valueBytesMax) break;
      bytes += size;
    }
    const value = new Uint8Array(bytes);
    let offset = 0;
    for (let i = first; i < end; i++) offset = writeFrame(value, offset, entries[i]!);
    invariant(offset === bytes, "a segment's frames do not fill it");
    segments.push({
      firstIndex: head.index,
      lastIndex: entries[end - 1]!.index,
      values: [value],
    });
    first = end;
  }
  return segments;
}

/** Number of overflow parts (beyond the head) an entry whose data has `dataBytes` needs. */
export function entryPartCount(dataBytes: number): number {
  const overflow = dataBytes - (kvLimits.valueBytesMax - entryHeaderBytes);
  return overflow <= 0 ? 0 : Math.ceil(overflow / kvLimits.valueBytesMax);
}

/**
 * Decodes the entry at `index` from its head and overflow parts.
 * @returns the entry, or a sentence saying what is wrong with the stored bytes.
 */
export function decodeEntry(
  index: number,
  head: unknown,
  parts: readonly unknown[],
): Entry | string {
  if (!(head instanceof Uint8Array)) return `its value is a ${describe(head)}, not bytes`;
  if (head.length < entryHeaderBytes) {
    return `its value has ${head.length} bytes, fewer than a header`;
  }
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const kind = kindsByCode[view.getUint8(0)];
  if (kind === undefined) return `it has the unknown kind code ${view.getUint8(0)}`;
  const term = readUint53(view, 1);
  const dataBytes = view.getUint32(9);
  const partCount = entryPartCount(dataBytes);
  if (parts.length !== partCount) {
    return `it declares ${dataBytes} data bytes (${partCount} overflow parts) but ${parts.length} parts are stored`;
  }
  const data = new Uint8Array(dataBytes);
  let offset = head.length - entryHeaderBytes;
  data.set(head.subarray(entryHeaderBytes), 0);
  for (const [i, part] of parts.entries()) {
    if (!(part instanceof Uint8Array)) return `its part ${i + 1} is a ${describe(part)}, not bytes`;
    if (offset + part.length > dataBytes) return `its parts hold more than ${dataBytes} data bytes`;
    data.set(part, offset);
    offset += part.length;
  }
  if (offset !== dataBytes) return `it declares ${dataBytes} data bytes but holds ${offset}`;
  let crc = crc32Update(crc32Start, head.subarray(0, 13));
  crc = crc32Finish(crc32Update(crc, data));
  if (crc !== view.getUint32(13)) return "its checksum does not match its contents";
  return { index, term, kind, data };
}

/** Where the entries of a segment's head value start, from its framing. */
export interface SegmentFrames {
  /** Byte offset of each entry's header; entry `firstIndex + i` starts at `offsets[i]`. */
  readonly offsets: readonly number[];
  /** True for one big entry whose data continues in overflow parts. */
  readonly big: boolean;
}

/**
 * Reads the framing of a segment's head value: the entries' data lengths must add up
 * exactly to the value's size, except for one big entry that fills a whole value and
 * continues in overflow parts. Checks no checksum.
 * @returns the frames, or a sentence saying what is wrong with the stored bytes.
 */
export function segmentFrames(firstIndex: number, head: unknown): SegmentFrames | string {
  if (!(head instanceof Uint8Array)) return `its value is a ${describe(head)}, not bytes`;
  if (head.length === 0) return "its value is empty";
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const offsets: number[] = [];
  for (let offset = 0; offset < head.length;) {
    const index = firstIndex + offsets.length;
    const left = head.length - offset;
    if (left < entryHeaderBytes) {
      return `its last ${left} bytes (after entry ${
        index - 1
      }) are fewer than an entry header: the entry lengths do not add up to the value's ${head.length} bytes`;
    }
    const dataBytes = view.getUint32(offset + 9);
    if (dataBytes > left - entryHeaderBytes) {
      if (offset === 0 && head.length === kvLimits.valueBytesMax) {
        return { offsets: [0], big: true };
      }
      return `its entry ${index} declares ${dataBytes} data bytes but only ${
        left - entryHeaderBytes
      } follow: the entry lengths do not add up to the value's ${head.length} bytes`;
    }
    offsets.push(offset);
    offset += entryHeaderBytes + dataBytes;
  }
  return { offsets, big: false };
}

/**
 * Decodes the segment whose first entry is at `firstIndex`, checking its framing and
 * every entry's checksum.
 * @returns its entries, or a sentence saying what is wrong with the stored bytes.
 */
export function decodeSegment(
  firstIndex: number,
  head: unknown,
  parts: readonly unknown[],
): Entry[] | string {
  const frames = segmentFrames(firstIndex, head);
  if (typeof frames === "string") return frames;
  invariant(head instanceof Uint8Array, "segmentFrames accepted a value that is not bytes");
  if (frames.big) {
    const entry = decodeEntry(firstIndex, head, parts);
    return typeof entry === "string" ? `its entry ${firstIndex}: ${entry}` : [entry];
  }
  if (parts.length > 0) {
    return `it packs ${frames.offsets.length} entries but ${parts.length} overflow parts are stored with it`;
  }
  const entries: Entry[] = [];
  for (const [i, offset] of frames.offsets.entries()) {
    const end = frames.offsets[i + 1] ?? head.length;
    const entry = decodeEntry(firstIndex + i, head.subarray(offset, end), []);
    if (typeof entry === "string") return `its entry ${firstIndex + i}: ${entry}`;
    entries.push(entry);
  }
  return entries;
}

/**
 * The term of the entry at `index` in the segment whose first entry is at `firstIndex`,
 * read from its header (the framing is checked, the checksums are not).
 * @returns the term, or a sentence saying what is wrong with the stored bytes.
 */
export function termInSegment(firstIndex: number, head: unknown, index: number): number | string {
  const frames = segmentFrames(firstIndex, head);
  if (typeof frames === "string") return frames;
  invariant(head instanceof Uint8Array, "segmentFrames accepted a value that is not bytes");
  const offset = frames.offsets[index - firstIndex];
  if (offset === undefined) {
    return `it holds entries ${firstIndex} to ${
      firstIndex + frames.offsets.length - 1
    }, not entry ${index}`;
  }
  return readUint53(new DataView(head.buffer, head.byteOffset, head.byteLength), offset + 1);
}

// ---------------------------------------------------------------------------------------
// Shapes of object values.

/** A short description of a value's type for error messages. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (value instanceof Uint8Array) return `byte array of ${value.length} bytes`;
  if (Array.isArray(value)) return "array";
  return typeof value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Uint8Array);
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** @returns the stamp, or a sentence saying what is wrong with it. */
export function parseFormatStamp(value: unknown): FormatStamp | string {
  if (!isRecord(value)) return `the format stamp is a ${describe(value)}, not an object`;
  const { clusterId, nodeId, formatVersion } = value;
  if (typeof clusterId !== "string") return "the format stamp has no string clusterId";
  if (typeof nodeId !== "string") return "the format stamp has no string nodeId";
  if (!isCount(formatVersion)) return "the format stamp has no integer formatVersion";
  return { clusterId, nodeId, formatVersion };
}

/**
 * The hard state as stored, with the index of the log's last entry. Log entries after
 * `lastIndex` are leftovers of a truncation (the commit that truncated the log only moved
 * `lastIndex`); nothing reads them and they are deleted right after, or at the next open.
 */
export interface StoredHardState extends HardState {
  readonly lastIndex: number;
}

/** @returns the stored hard state, or a sentence saying what is wrong with it. */
export function parseStoredHardState(value: unknown): StoredHardState | string {
  if (!isRecord(value)) return `the hard state is a ${describe(value)}, not an object`;
  const { term, vote, commit, lastIndex } = value;
  if (!isCount(term)) return `the hard state term is ${String(term)}, not an integer ≥ 0`;
  if (!isCount(commit)) return `the hard state commit is ${String(commit)}, not an integer ≥ 0`;
  if (!isCount(lastIndex)) {
    return `the hard state lastIndex is ${String(lastIndex)}, not an integer ≥ 0`;
  }
  if (vote !== null && typeof vote !== "string") {
    return `the hard state vote is a ${describe(vote)}, not a node id or null`;
  }
  return { term, vote, commit, lastIndex };
}

/** The stored form of a hard state with the log's last index. */
export function storedHardState(hardState: HardState, lastIndex: number): StoredHardState {
  return { term: hardState.term, vote: hardState.vote, commit: hardState.commit, lastIndex };
}

/** @returns the snapshot record, or a sentence saying what is wrong with it. */
export function parseSnapshotRecord(value: unknown): SnapshotRecord | string {
  if (!isRecord(value)) return `the snapshot record is a ${describe(value)}, not an object`;
  const { id, index, term, voters, byteLength, chunkCount, crc32 } = value;
  if (typeof id !== "bigint" || id < 1n) return "the snapshot record has no bigint id ≥ 1";
  if (!isCount(index) || index < 1) return `the snapshot index is ${String(index)}, not ≥ 1`;
  if (!isCount(term)) return `the snapshot term is ${String(term)}, not an integer ≥ 0`;
  if (!Array.isArray(voters) || !voters.every((voter) => typeof voter === "string")) {
    return "the snapshot voters are not a list of node ids";
  }
  if (!isCount(byteLength)) return "the snapshot record has no byteLength";
  if (!isCount(chunkCount) || chunkCount !== Math.ceil(byteLength / kvLimits.valueBytesMax)) {
    return `the snapshot chunk count ${String(chunkCount)} does not fit its ${byteLength} bytes`;
  }
  if (!isCount(crc32) || crc32 > 0xffffffff) return "the snapshot record has no crc32";
  return { id, index, term, voters: voters as string[], byteLength, chunkCount, crc32 };
}

/** The meta of a stored snapshot. */
export function snapshotMetaOf(record: SnapshotRecord): SnapshotMeta {
  return { index: record.index, term: record.term, voters: [...record.voters] };
}

/** A key rendered for error messages, e.g. `["log", 12n]`. */
export function renderKey(key: Deno.KvKey): string {
  const parts = key.map((part) => {
    if (typeof part === "bigint") return `${part}n`;
    if (part instanceof Uint8Array) return `<${part.length} bytes>`;
    return JSON.stringify(part);
  });
  return `[${parts.join(", ")}]`;
}
