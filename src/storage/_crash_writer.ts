/**
 * Test helper run as a child process by crash_test.ts, which kills it with SIGKILL at a
 * random moment and then checks the store. Not part of the module's API.
 *
 * `deno run -A --unstable-kv _crash_writer.ts batches <dataDir>`: saves batches of entries
 * in a loop; every entry's data says (batch number, position, batch size, entries of the
 * batch before it kept); every fifth batch replaces the previous batch, alternately whole
 * and from its middle (a conflicting append starting at a segment's first entry, or inside
 * a segment); every ninth batch is bigger than one KV commit. After each save resolves it
 * prints `saved <batch> <lastIndex>`.
 *
 * `deno run -A --unstable-kv _crash_writer.ts snapshots <dataDir>`: appends entries and
 * stores a 3 MiB snapshot whose bytes derive from its index, alternating local compaction
 * and installation (as from a leader). Prints `snapshot <index>` after each.
 *
 * `deno run -A --unstable-kv _crash_writer.ts interleaved <dataDir>`: saves batches of 20
 * entries (each entry's data holds its index) while a compaction with a 3 MiB snapshot
 * persists in the background, so that the saves go between its steps; every third round
 * a snapshot from a leader is installed in the middle (beyond the log, in a new term),
 * racing the compaction. Prints `saved <lastIndex>`, `compacted <index>` and
 * `installed <index>` as each resolves.
 *
 * @module
 */

import type { Entry, HardState } from "../raft/types.ts";
import { KvLogStorage } from "./kv_log_storage.ts";

/** Entries of a batch bigger than one commit. */
export const bigBatchEntries = 1_500;
/** Bytes of each snapshot in `snapshots` mode. */
export const crashSnapshotBytes = 3 * 1024 * 1024;

/** What the data of an entry of `batches` mode says. */
export interface BatchEntry {
  readonly batch: number;
  readonly position: number;
  readonly size: number;
  /**
   * Entries of the batch before this one that this batch kept: all of them, or fewer when
   * this batch replaced the previous one from its middle.
   */
  readonly keptOfPrevious: number;
}

/** Data of an entry of `batches` mode. */
export function batchEntryData(entry: BatchEntry): Uint8Array {
  // Entries of a big batch are bigger (about 1 MB in all): more than one commit.
  const filler = (entry.batch * 7 + entry.position) % 97 +
    (entry.size === bigBatchEntries ? 600 : 0);
  const data = new Uint8Array(16 + filler);
  const view = new DataView(data.buffer);
  view.setUint32(0, entry.batch);
  view.setUint32(4, entry.position);
  view.setUint32(8, entry.size);
  view.setUint32(12, entry.keptOfPrevious);
  data.fill(entry.batch & 0xff, 16);
  return data;
}

/** Reads back what {@link batchEntryData} wrote. */
export function parseBatchEntryData(data: Uint8Array): BatchEntry {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return {
    batch: view.getUint32(0),
    position: view.getUint32(4),
    size: view.getUint32(8),
    keptOfPrevious: view.getUint32(12),
  };
}

/** Number of entries of batch `batch`. */
export function batchSize(batch: number): number {
  return batch % 9 === 8 ? bigBatchEntries : 1 + (batch * 37) % 150;
}

/** The snapshot bytes for `index`: the index in the first 8 bytes, then a pattern. */
export function snapshotData(index: number): Uint8Array {
  const data = new Uint8Array(crashSnapshotBytes);
  new DataView(data.buffer).setFloat64(0, index);
  for (let i = 8; i < data.length; i += 4096) data[i] = (index + i / 4096) & 0xff;
  return data;
}

/** Entry data in `interleaved` mode: the entry's index, then filler. */
export function indexedEntryData(index: number): Uint8Array {
  const data = new Uint8Array(40).fill(index & 0xff);
  new DataView(data.buffer).setFloat64(0, index);
  return data;
}

/** Reads back the index {@link indexedEntryData} wrote. */
export function parseIndexedEntryData(data: Uint8Array): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getFloat64(0);
}

async function writeInterleaved(storage: KvLogStorage): Promise<never> {
  const restored = await storage.load();
  let lastIndex = restored.entries.at(-1)?.index ?? restored.snapshot?.meta.index ?? 0;
  let term = restored.hardState.term + 1;
  const saveBatch = async (): Promise<void> => {
    const entries: Entry[] = [];
    for (let i = 1; i <= 20; i++) {
      entries.push({
        index: lastIndex + i,
        term,
        kind: "normal",
        data: indexedEntryData(lastIndex + i),
      });
    }
    await storage.save({ hardState: { term, vote: null, commit: lastIndex }, entries });
    lastIndex += 20;
    console.log(`saved ${lastIndex}`);
  };
  for (let round = 0;; round++) {
    await saveBatch();
    // Compact at the last entry, which this run wrote in this term; not awaited.
    const index = lastIndex;
    const compaction = storage.saveSnapshotAndCompact({
      meta: { index, term, voters: ["n1"] },
      data: snapshotData(index),
    }).then(() => console.log(`compacted ${index}`));
    const saves = 6 + round % 11;
    for (let i = 0; i < saves; i++) {
      await saveBatch();
      if (round % 3 === 2 && i === round % 7) {
        term++;
        const installed = lastIndex + 30;
        await storage.save({
          snapshot: {
            meta: { index: installed, term, voters: ["n1"] },
            data: snapshotData(installed),
          },
          hardState: { term, vote: null, commit: installed },
          entries: [],
        });
        lastIndex = installed;
        console.log(`installed ${installed}`);
      }
    }
    await compaction;
  }
}

async function writeBatches(storage: KvLogStorage): Promise<never> {
  const restored = await storage.load();
  const last = restored.entries.at(-1);
  const lastData = last === undefined ? null : parseBatchEntryData(last.data);
  let batch = lastData === null ? 0 : lastData.batch + 1;
  let lastIndex = last?.index ?? restored.snapshot?.meta.index ?? 0;
  let previousBatchStart = last === undefined || lastData === null
    ? lastIndex + 1
    : last.index - lastData.position;
  // A batch cut short by the last kill is replaced first, so that only the log's end can be partial.
  let replaceNext = lastData !== null && lastData.position + 1 < lastData.size;
  let previousBatchInThisRun = false;
  const term = restored.hardState.term + 1;
  let compactedIndex = restored.snapshot?.meta.index ?? 0;
  for (;;) {
    const size = batchSize(batch);
    const previousEntries = lastIndex - previousBatchStart + 1;
    const replacePrevious = replaceNext ||
      (batch % 5 === 4 && lastIndex > 0 && previousBatchStart > 1);
    // Every other replacement keeps the first half of the previous batch.
    const keptOfPrevious = !replacePrevious
      ? previousEntries
      : replaceNext || batch % 10 === 4
      ? 0
      : Math.floor(previousEntries / 2);
    const start = replacePrevious ? previousBatchStart + keptOfPrevious : lastIndex + 1;
    const entries: Entry[] = [];
    for (let position = 0; position < size; position++) {
      entries.push({
        index: start + position,
        term,
        kind: "normal",
        data: batchEntryData({ batch, position, size, keptOfPrevious }),
      });
    }
    const newLast = start + size - 1;
    const hardState: HardState = { term, vote: "n1", commit: Math.max(0, start - 1) };
    await storage.save({ hardState, entries });
    console.log(`saved ${batch} ${newLast}`);
    if (previousBatchInThisRun && !replacePrevious && start - 1 - compactedIndex > 20_000) {
      // Compact at the end of the previous batch (written in this run, so with this term).
      await storage.saveSnapshotAndCompact({
        meta: { index: start - 1, term, voters: ["n1"] },
        data: snapshotData(start - 1).subarray(0, 1000),
      });
      compactedIndex = start - 1;
      console.log(`compacted ${start - 1}`);
    }
    replaceNext = false;
    previousBatchInThisRun = true;
    previousBatchStart = start;
    lastIndex = newLast;
    batch++;
  }
}

async function writeSnapshots(storage: KvLogStorage): Promise<never> {
  const restored = await storage.load();
  let lastIndex = restored.entries.at(-1)?.index ?? restored.snapshot?.meta.index ?? 0;
  let term = restored.hardState.term + 1;
  for (let round = 0;; round++) {
    const entries: Entry[] = [];
    for (let i = 1; i <= 50; i++) {
      entries.push({
        index: lastIndex + i,
        term,
        kind: "normal",
        data: new Uint8Array(100).fill(i),
      });
    }
    lastIndex += 50;
    await storage.save({ hardState: { term, vote: null, commit: lastIndex }, entries });
    if (round % 2 === 0) {
      const index = lastIndex - 10;
      await storage.saveSnapshotAndCompact({
        meta: { index, term, voters: ["n1"] },
        data: snapshotData(index),
      });
      console.log(`snapshot ${index}`);
    } else {
      // Installation from a leader, beyond the local log: the log is replaced.
      term++;
      const index = lastIndex + 20;
      await storage.save({
        snapshot: { meta: { index, term, voters: ["n1"] }, data: snapshotData(index) },
        hardState: { term, vote: null, commit: index },
        entries: [],
      });
      lastIndex = index;
      console.log(`snapshot ${index}`);
    }
  }
}

if (import.meta.main) {
  const [mode, dataDir] = Deno.args;
  const writers = {
    batches: writeBatches,
    snapshots: writeSnapshots,
    interleaved: writeInterleaved,
  } as const;
  if (
    dataDir === undefined || !(mode === "batches" || mode === "snapshots" || mode === "interleaved")
  ) {
    console.error("usage: _crash_writer.ts batches|snapshots|interleaved <dataDir>");
    Deno.exit(2);
  }
  const storage = await KvLogStorage.open({ dataDir, clusterId: "crash", nodeId: "n1" });
  console.log("ready");
  await writers[mode](storage);
}
