/**
 * Reading a whole Raft store back and checking that it is consistent. Any problem is a
 * {@link StorageError} naming the problem and the key or index where it is.
 *
 * @module
 */

import type { Entry, HardState, RestoredState, Snapshot } from "../raft/types.ts";
import {
  crc32Finish,
  crc32Start,
  crc32Update,
  decodeSegment,
  describe,
  type FormatStamp,
  formatVersion,
  kvLimits,
  logKey,
  logPrefix,
  parseFormatStamp,
  parseSnapshotRecord,
  parseStoredHardState,
  renderKey,
  segmentFrames,
  snapshotChunkPrefix,
  snapshotMetaOf,
  type SnapshotRecord,
} from "./_codec.ts";
import type { SegmentInfo } from "./_segments.ts";
import { StorageError } from "./storage_error.ts";

/** What a scan found in a store that is not empty. */
export interface ScannedStore {
  readonly stamp: FormatStamp;
  readonly restored: RestoredState;
  readonly snapshotRecord: SnapshotRecord | null;
  /** Index of the last entry, or of the snapshot when there are no entries after it. */
  readonly lastIndex: number;
  /**
   * The log segments that hold entries of the log, in order (the first may also hold
   * entries at or below the snapshot's index, the last entries after `lastIndex`: dead).
   */
  readonly segments: readonly SegmentInfo[];
  /**
   * Leftovers of an operation a crash interrupted after its switching commit: log segments
   * with no entry after the snapshot's index or none up to the recorded last index, and
   * chunks of snapshots other than the current one. Nothing reads them; deleting them
   * completes the operation.
   */
  readonly leftoverKeys: readonly Deno.KvKey[];
}

/** Where the store is and whose it must be. */
export interface ScanContext {
  readonly dataDir: string;
  readonly kvPath: string;
  readonly clusterId: string;
  readonly nodeId: string;
}

/** A stored log segment: its head value and overflow parts, under `["log", index, …]`. */
interface LogRecord {
  /** The index of its first entry. */
  readonly index: number;
  readonly keys: Deno.KvKey[];
  head: unknown;
  hasHead: boolean;
  readonly parts: unknown[];
}

interface ChunkSet {
  readonly chunks: Map<number, unknown>;
  readonly keys: Deno.KvKey[];
}

interface RawStore {
  stamp?: unknown;
  hardState?: unknown;
  snapshot?: unknown;
  readonly log: LogRecord[];
  readonly chunkSets: Map<bigint, ChunkSet>;
  unexpectedKey?: Deno.KvKey;
  keyCount: number;
}

/**
 * Reads every key of the store and checks it.
 * @returns null for an empty store (never written), else what it holds.
 * @throws {StorageError} when the store is unreadable, corrupt, or not this server's.
 */
export async function scanStore(kv: Deno.Kv, context: ScanContext): Promise<ScannedStore | null> {
  let raw: RawStore;
  try {
    raw = await readRaw(kv, context);
  } catch (error) {
    if (error instanceof StorageError) throw error;
    throw refuse(context, `Deno KV cannot read it: ${String(error)}`, error);
  }
  if (raw.keyCount === 0) return null;
  return checkRaw(raw, context);
}

function refuse(context: ScanContext, problem: string, cause?: unknown): StorageError {
  return new StorageError(
    context.dataDir,
    `Cannot open the Raft store at ${context.kvPath} as ${problem}`,
    cause === undefined ? undefined : { cause },
  );
}

async function readRaw(kv: Deno.Kv, context: ScanContext): Promise<RawStore> {
  const raw: RawStore = { log: [], chunkSets: new Map(), keyCount: 0 };
  for await (const { key, value } of kv.list({ prefix: [] }, { batchSize: 500 })) {
    raw.keyCount++;
    const name = key[0];
    if (key.length === 1 && name === "format") raw.stamp = value;
    else if (key.length === 1 && name === "hardState") raw.hardState = value;
    else if (key.length === 1 && name === "snapshot") raw.snapshot = value;
    else if (name === logPrefix) addLogValue(raw, key, value, context);
    else if (name === snapshotChunkPrefix) addChunkValue(raw, key, value, context);
    else raw.unexpectedKey ??= key;
  }
  return raw;
}

function addLogValue(raw: RawStore, key: Deno.KvKey, value: unknown, context: ScanContext): void {
  const index = key[1];
  const part = key[2];
  if (typeof index !== "bigint" || index < 1n || index > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw refuse(context, `the log key ${renderKey(key)} has no index (a bigint ≥ 1)`);
  }
  if (
    key.length > 3 ||
    (key.length === 3 && !(typeof part === "number" && Number.isSafeInteger(part) && part >= 1))
  ) {
    throw refuse(context, `the log key ${renderKey(key)} is malformed`);
  }
  const entryIndex = Number(index);
  let record = raw.log.at(-1);
  if (record === undefined || record.index !== entryIndex) {
    record = { index: entryIndex, keys: [], head: undefined, hasHead: false, parts: [] };
    raw.log.push(record);
  }
  record.keys.push(key);
  if (key.length === 2) {
    record.head = value;
    record.hasHead = true;
  } else if (part !== record.parts.length + 1) {
    throw refuse(
      context,
      `the log segment ${renderKey(logKey(entryIndex))} misses overflow part ${
        record.parts.length + 1
      }`,
    );
  } else {
    record.parts.push(value);
  }
}

function addChunkValue(raw: RawStore, key: Deno.KvKey, value: unknown, context: ScanContext): void {
  const id = key[1];
  const chunk = key[2];
  if (
    key.length !== 3 || typeof id !== "bigint" ||
    !(typeof chunk === "number" && Number.isSafeInteger(chunk) && chunk >= 0)
  ) {
    throw refuse(context, `the snapshot chunk key ${renderKey(key)} is malformed`);
  }
  let set = raw.chunkSets.get(id);
  if (set === undefined) {
    set = { chunks: new Map(), keys: [] };
    raw.chunkSets.set(id, set);
  }
  set.chunks.set(chunk, value);
  set.keys.push(key);
}

function checkRaw(raw: RawStore, context: ScanContext): ScannedStore {
  const stamp = checkStamp(raw.stamp, context);
  if (raw.unexpectedKey !== undefined) {
    throw refuse(
      context,
      `it holds the key ${renderKey(raw.unexpectedKey)}, which is not part of a Raft store`,
    );
  }
  if (raw.hardState === undefined) {
    throw refuse(context, `its hard state (key ["hardState"]) is missing`);
  }
  const stored = parseStoredHardState(raw.hardState);
  if (typeof stored === "string") throw refuse(context, stored);
  const { lastIndex } = stored;
  const hardState: HardState = { term: stored.term, vote: stored.vote, commit: stored.commit };
  let snapshotRecord: SnapshotRecord | null = null;
  let snapshot: Snapshot | null = null;
  if (raw.snapshot !== undefined) {
    const parsed = parseSnapshotRecord(raw.snapshot);
    if (typeof parsed === "string") throw refuse(context, parsed);
    snapshotRecord = parsed;
    snapshot = { meta: snapshotMetaOf(parsed), data: assembleSnapshot(raw, parsed, context) };
  }
  const leftoverKeys: Deno.KvKey[] = [];
  for (const [id, set] of raw.chunkSets) {
    if (id !== snapshotRecord?.id) leftoverKeys.push(...set.keys);
  }
  const snapshotIndex = snapshotRecord?.index ?? 0;
  if (lastIndex < snapshotIndex) {
    throw refuse(
      context,
      `its hard state says the log ends at index ${lastIndex}, before the snapshot's index ${snapshotIndex}`,
    );
  }
  const { entries, segments } = decodeLog(
    raw.log,
    snapshotRecord,
    lastIndex,
    leftoverKeys,
    context,
  );
  checkHardState(hardState, snapshotRecord, entries, lastIndex, context);
  return {
    stamp,
    restored: { hardState, snapshot, entries },
    snapshotRecord,
    lastIndex,
    segments,
    leftoverKeys,
  };
}

function checkStamp(value: unknown, context: ScanContext): FormatStamp {
  if (value === undefined) {
    throw refuse(
      context,
      `it holds data but no format stamp (key ["format"]): it was not written by dlock, or is damaged`,
    );
  }
  const stamp = parseFormatStamp(value);
  if (typeof stamp === "string") throw refuse(context, stamp);
  if (stamp.formatVersion !== formatVersion) {
    throw refuse(
      context,
      `it was written in storage format version ${stamp.formatVersion} and this build reads only version ${formatVersion}; there is no in-place upgrade between storage formats while dlock is 0.x, so open it with the dlock release that wrote it`,
    );
  }
  if (stamp.clusterId !== context.clusterId) {
    throw refuse(
      context,
      `it belongs to cluster "${stamp.clusterId}", not to cluster "${context.clusterId}": is this the data directory of another cluster?`,
    );
  }
  if (stamp.nodeId !== context.nodeId) {
    throw refuse(
      context,
      `it belongs to server "${stamp.nodeId}", not to server "${context.nodeId}": is this the data directory of another server?`,
    );
  }
  return stamp;
}

function assembleSnapshot(raw: RawStore, record: SnapshotRecord, context: ScanContext): Uint8Array {
  const where = `snapshot ${record.id} (index ${record.index})`;
  const chunks = raw.chunkSets.get(record.id)?.chunks ?? new Map<number, unknown>();
  if (chunks.size !== record.chunkCount) {
    throw refuse(
      context,
      `${where} should have ${record.chunkCount} chunks but ${chunks.size} are stored`,
    );
  }
  const data = new Uint8Array(record.byteLength);
  let crc = crc32Start;
  for (let chunk = 0; chunk < record.chunkCount; chunk++) {
    const value = chunks.get(chunk);
    const expectedBytes = Math.min(
      kvLimits.valueBytesMax,
      record.byteLength - chunk * kvLimits.valueBytesMax,
    );
    if (value === undefined) throw refuse(context, `${where} misses chunk ${chunk}`);
    if (!(value instanceof Uint8Array) || value.length !== expectedBytes) {
      throw refuse(
        context,
        `${where} has a bad chunk ${chunk}: a ${describe(value)}, expected ${expectedBytes} bytes`,
      );
    }
    data.set(value, chunk * kvLimits.valueBytesMax);
    crc = crc32Update(crc, value);
  }
  if (crc32Finish(crc) !== record.crc32) {
    throw refuse(context, `the checksum of ${where} does not match its data`);
  }
  return data;
}

/**
 * Decodes the log segments: those with no entry in (snapshot index, lastIndex] are
 * leftovers (their keys go to `leftoverKeys`); the others must be intact and together hold
 * every entry of that range, once, with terms that never decrease.
 */
function decodeLog(
  log: readonly LogRecord[],
  snapshot: SnapshotRecord | null,
  lastIndex: number,
  leftoverKeys: Deno.KvKey[],
  context: ScanContext,
): { entries: Entry[]; segments: SegmentInfo[] } {
  const snapshotIndex = snapshot?.index ?? 0;
  const entries: Entry[] = [];
  const segments: SegmentInfo[] = [];
  let expectedIndex = snapshotIndex + 1;
  let previousTerm = snapshot?.term ?? 0;
  for (const record of log) {
    const where = `the log segment ${renderKey(logKey(record.index))}`;
    if (!record.hasHead) throw refuse(context, `${where} has overflow parts but no head value`);
    const frames = segmentFrames(record.index, record.head);
    if (typeof frames === "string") throw refuse(context, `${where} is damaged: ${frames}`);
    const last = record.index + frames.offsets.length - 1;
    if (last <= snapshotIndex || record.index > lastIndex || lastIndex <= snapshotIndex) {
      leftoverKeys.push(...record.keys);
      continue;
    }
    if (record.index > expectedIndex) {
      throw refuse(context, describeGap(expectedIndex, record.index, snapshot));
    }
    if (record.index < expectedIndex && segments.length > 0) {
      throw refuse(
        context,
        `${where} holds entries ${record.index} to ${last}, overlapping the segment before it, which ends at entry ${
          expectedIndex - 1
        }`,
      );
    }
    const decoded = decodeSegment(record.index, record.head, record.parts);
    if (typeof decoded === "string") throw refuse(context, `${where} is damaged: ${decoded}`);
    for (const entry of decoded) {
      if (entry.index <= snapshotIndex || entry.index > lastIndex) continue;
      if (entry.term < previousTerm) {
        throw refuse(
          context,
          `the log entry ${entry.index} (in ${where}) has term ${entry.term}, lower than the term ${previousTerm} before it`,
        );
      }
      entries.push(entry);
      previousTerm = entry.term;
    }
    segments.push({ firstIndex: record.index, lastIndex: last, partCount: record.parts.length });
    expectedIndex = last + 1;
  }
  const logEnd = entries.at(-1)?.index ?? snapshotIndex;
  if (logEnd < lastIndex) {
    throw refuse(
      context,
      `its log ends at index ${logEnd} but its hard state says it ends at ${lastIndex}: entries ${
        logEnd + 1
      } to ${lastIndex} are missing`,
    );
  }
  return { entries, segments };
}

function describeGap(
  expectedIndex: number,
  foundIndex: number,
  snapshot: SnapshotRecord | null,
): string {
  if (expectedIndex === 1) {
    return `its log starts at index ${foundIndex} but there is no snapshot covering indexes 1 to ${
      foundIndex - 1
    }`;
  }
  if (snapshot !== null && expectedIndex === snapshot.index + 1) {
    return `its log starts at index ${foundIndex} but the snapshot ends at index ${snapshot.index}: entries ${expectedIndex} to ${
      foundIndex - 1
    } are missing`;
  }
  return `its log has a hole: entries ${expectedIndex} to ${
    foundIndex - 1
  } are missing (the log jumps from ${expectedIndex - 1} to ${foundIndex})`;
}

function checkHardState(
  hardState: HardState,
  snapshot: SnapshotRecord | null,
  entries: readonly Entry[],
  lastIndex: number,
  context: ScanContext,
): void {
  if (hardState.commit > lastIndex) {
    throw refuse(
      context,
      `its hard state commit ${hardState.commit} is beyond the last log index ${lastIndex}`,
    );
  }
  const lastTerm = entries.at(-1)?.term ?? snapshot?.term ?? 0;
  if (lastTerm > hardState.term) {
    throw refuse(
      context,
      `its log holds term ${lastTerm} at index ${lastIndex}, beyond the hard state term ${hardState.term}`,
    );
  }
}
