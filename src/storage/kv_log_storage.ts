/**
 * {@link KvLogStorage}: the durable Raft log, hard state and snapshots of one server, in
 * Deno KV. See mod.ts for the layout, the crash-consistency rules and the durability
 * guarantees.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { Entry, HardState, RestoredState, Snapshot } from "../raft/types.ts";
import {
  crc32Finish,
  crc32Start,
  crc32Update,
  decodeSegment,
  type EncodedSegment,
  encodeSegments,
  formatKey,
  type FormatStamp,
  formatVersion,
  hardStateKey,
  kvLimits,
  logKey,
  logPartKey,
  logPrefix,
  renderKey,
  snapshotChunkKey,
  snapshotKey,
  type SnapshotRecord,
  storedHardState,
  termInSegment,
} from "./_codec.ts";
import {
  addCosts,
  commit,
  costOf,
  emptyCost,
  fitsInOneCommit,
  type Mutation,
  packUnits,
  packUnitsCounted,
  type Unit,
} from "./_commits.ts";
import { checkFloor, type Floor, floorIntervalMs, readFloor, writeFloor } from "./_floor.ts";
import { invariant } from "./_invariant.ts";
import { checkSqliteFile } from "./_integrity.ts";
import { type ScanContext, scanStore } from "./_scan.ts";
import { SegmentIndex, type SegmentInfo, segmentKeys } from "./_segments.ts";
import { StorageError } from "./storage_error.ts";

/** Name of the Deno KV file inside the data directory. */
export const kvFileName = "raft.kv";
/** Name of the lock file that keeps a second process from opening the same store. */
export const lockFileName = "raft.lock";

/**
 * Snapshot chunks (64 KiB each) written per commit by {@link KvLogStorage.saveSnapshotAndCompact};
 * each commit is its own step, so that saves called meanwhile wait for one step at most.
 */
export const snapshotChunksPerStep = 4;
/** Keys (log segments and snapshot chunks) deleted per commit (one step) after a compaction. */
export const compactionDeletesPerStep = 256;

/** Options of {@link KvLogStorage.open}. */
export interface KvLogStorageOptions {
  /** The server's data directory; created if missing. */
  readonly dataDir: string;
  /** The cluster this store belongs to; a store of another cluster is refused. */
  readonly clusterId: string;
  /** The server this store belongs to; a store of another server is refused. */
  readonly nodeId: string;
}

/** What one Ready asks to persist (see `Ready` in src/raft/types.ts). */
export interface StorageUpdate {
  /** The new hard state, if it changed. */
  readonly hardState?: HardState | undefined;
  /** Entries to append; persisted entries at and after `entries[0].index` are replaced. */
  readonly entries: readonly Entry[];
  /** A snapshot received from the leader, if any. */
  readonly snapshot?: Snapshot | undefined;
}

/**
 * The durable state of one Raft server in Deno KV (`<dataDir>/raft.kv`).
 *
 * Operations run one at a time in call order (each waits for the ones called before it),
 * and each resolves only once what it wrote is durable. After a write fails, the store
 * refuses every further operation: the server must stop and start again from what
 * {@link KvLogStorage.load} returns.
 *
 * @example
 * ```ts
 * const storage = await KvLogStorage.open({ dataDir: "./data/n1", clusterId: "c1", nodeId: "n1" });
 * const restored = await storage.load();
 * await storage.save({ hardState: { term: 1, vote: "n1", commit: 0 }, entries: [] });
 * storage.close();
 * ```
 */
export class KvLogStorage {
  readonly #kv: Deno.Kv;
  readonly #lockFile: Deno.FsFile;
  readonly #context: ScanContext;
  #hardState: HardState;
  #snapshotRecord: SnapshotRecord | null;
  /** Id of the next snapshot written; ids are never reused while the store is open. */
  #nextSnapshotId: bigint;
  #lastIndex: number;
  /** Every log segment in the store; kept in step with each commit. */
  readonly #segments: SegmentIndex;
  #restoredAtOpen: RestoredState | null;
  #tail: Promise<void> = Promise.resolve();
  #failure: Error | null = null;
  #closed = false;
  /** The floor last written (or read at open); see _floor.ts. */
  #floor: Floor | null;
  #floorWrittenAtMs = -Infinity;

  private constructor(
    kv: Deno.Kv,
    lockFile: Deno.FsFile,
    context: ScanContext,
    restored: RestoredState,
    snapshotRecord: SnapshotRecord | null,
    lastIndex: number,
    segments: readonly SegmentInfo[],
    floor: Floor | null,
  ) {
    this.#kv = kv;
    this.#lockFile = lockFile;
    this.#context = context;
    this.#hardState = restored.hardState;
    this.#snapshotRecord = snapshotRecord;
    this.#nextSnapshotId = (snapshotRecord?.id ?? 0n) + 1n;
    this.#lastIndex = lastIndex;
    this.#segments = new SegmentIndex(segments);
    this.#restoredAtOpen = restored;
    this.#floor = floor;
  }

  /**
   * Opens the store under `dataDir`, or creates it (stamped with cluster id, node id and
   * format version) when there is none. An existing store is read in full and checked;
   * leftovers of an operation interrupted by a crash (entries covered by the snapshot or
   * after the recorded last index, chunks of a replaced or unfinished snapshot) are
   * deleted. A KV file without any key (a crash while creating the store) is stamped as new.
   *
   * @throws {StorageError} when the store belongs to another cluster or server, has an
   * unknown format version, is unreadable or corrupt (the message says what and where),
   * or is open in another process (or in another KvLogStorage of this process).
   */
  static async open(options: KvLogStorageOptions): Promise<KvLogStorage> {
    const { dataDir, clusterId, nodeId } = options;
    invariant(clusterId.length > 0 && nodeId.length > 0, "clusterId and nodeId must not be empty");
    const kvPath = join(dataDir, kvFileName);
    const context: ScanContext = { dataDir, kvPath, clusterId, nodeId };
    const lockFile = await lockDataDir(dataDir);
    try {
      await checkSqliteFile(dataDir, kvPath);
      let kv: Deno.Kv;
      try {
        kv = await Deno.openKv(kvPath);
      } catch (error) {
        throw new StorageError(
          dataDir,
          `Cannot open the Raft store at ${kvPath} as Deno KV cannot open it: ${String(error)}`,
          { cause: error },
        );
      }
      try {
        const storage = await KvLogStorage.#start(kv, lockFile, context);
        await syncDirectory(dataDir);
        return storage;
      } catch (error) {
        kv.close();
        throw error;
      }
    } catch (error) {
      lockFile.close();
      throw error;
    }
  }

  static async #start(
    kv: Deno.Kv,
    lockFile: Deno.FsFile,
    context: ScanContext,
  ): Promise<KvLogStorage> {
    const scanned = await scanStore(kv, context);
    // Before anything is written: a store behind its floor is refused unchanged.
    const floor = await readFloor(context.dataDir);
    if (floor !== null) {
      checkFloor(
        context.dataDir,
        floor,
        context,
        scanned === null
          ? null
          : { hardState: scanned.restored.hardState, lastIndex: scanned.lastIndex },
      );
    }
    if (scanned === null) {
      const hardState: HardState = { term: 0, vote: null, commit: 0 };
      const stamp: FormatStamp = {
        clusterId: context.clusterId,
        nodeId: context.nodeId,
        formatVersion,
      };
      const result = await kv.atomic()
        .check({ key: formatKey, versionstamp: null })
        .set(formatKey, stamp)
        .set(hardStateKey, storedHardState(hardState, 0))
        .commit();
      invariant(result.ok, "the store was written while it was being created");
      return new KvLogStorage(
        kv,
        lockFile,
        context,
        { hardState, snapshot: null, entries: [] },
        null,
        0,
        [],
        floor,
      );
    }
    for (const mutations of packUnits(deletionUnits(scanned.leftoverKeys), emptyCost)) {
      await commit(kv, mutations);
    }
    return new KvLogStorage(
      kv,
      lockFile,
      context,
      scanned.restored,
      scanned.snapshotRecord,
      scanned.lastIndex,
      scanned.segments,
      floor,
    );
  }

  /**
   * What was persisted, for the Raft core at start: the hard state, the latest snapshot (or
   * null), and the entries after it (contiguous, in order). Reads and checks the store again
   * unless nothing was written since {@link KvLogStorage.open}, which already did.
   * @throws {StorageError} when the store is corrupt or a read fails.
   */
  load(): Promise<RestoredState> {
    return this.#run("load the state", async () => {
      const cached = this.#restoredAtOpen;
      this.#restoredAtOpen = null;
      if (cached !== null) return cached;
      const scanned = await scanStore(this.#kv, this.#context);
      invariant(scanned !== null, "the store lost its format stamp while open");
      return scanned.restored;
    });
  }

  /**
   * Persists the durable parts of one Ready: first the snapshot, if any (it replaces the
   * log up to its index; entries after it are kept only if the log has the snapshot's
   * last entry with the same term, as in the Raft paper, figure 13), then the entries
   * (replacing every persisted entry at and after `entries[0].index`) with the hard state.
   *
   * The entries are packed back to back into log segments of at most 64 KiB (normally
   * one per save). A batch within Deno KV's commit limits (about 780 KiB: 12 full
   * segments) goes in ONE atomic commit, together with the hard state and the log's new
   * last index; when it replaces a suffix, the segment holding `entries[0].index` is
   * rewritten without the replaced entries and the segments the batch covers are deleted
   * in that commit too, and the new last index hides the rest of the suffix at once (its
   * segments are deleted in the same commit if it has room, else right after). A bigger
   * batch is split into commits of whole segments in index order, each extending the last
   * index and carrying the hard state with its commit capped at that index, so that a
   * crash leaves a prefix of the new log and a consistent hard state. A snapshot's data
   * is written first under a new id and switched to in one commit.
   *
   * Resolves only after everything is durable; the core must not treat entries as
   * persisted before.
   *
   * @throws {StorageError} when a write fails (the store then refuses further operations).
   * @throws {Error} "InvariantError" when the update breaks the contract (a hole before
   * `entries[0]`, entries not contiguous, entries inside the snapshot, a hard state commit
   * beyond the last index or a term below the log's): a programming error.
   */
  save(update: StorageUpdate): Promise<void> {
    return this.#run("save a Ready", async () => {
      checkEntries(update.entries);
      this.#restoredAtOpen = null;
      if (update.snapshot !== undefined) {
        await this.#storeSnapshot(update.snapshot, update.hardState ?? this.#hardState);
      }
      const hardState = update.hardState ?? this.#hardState;
      if (update.entries.length > 0 || !sameHardState(hardState, this.#hardState)) {
        await this.#append(update.entries, hardState);
      }
      this.#maybeWriteFloor();
    });
  }

  /**
   * Stores a snapshot the state machine took, then deletes the log segments whose entries
   * are all at or below `snapshot.meta.index`; entries after it stay (a segment straddling
   * the index stays whole, its entries up to the index dead). Written under a new id and switched to
   * in one commit; the replaced snapshot's chunks are deleted after the switch.
   *
   * Runs as a sequence of small steps, each one operation in the store's queue (a commit
   * of {@link snapshotChunksPerStep} chunks, the switch, a commit of
   * {@link compactionDeletesPerStep} deletions): each step is queued only when the one
   * before it is done, so operations called meanwhile (saves) run between the steps
   * instead of waiting for the whole snapshot. The chunks go under an id nothing refers to
   * and the deleted keys are dead for good after the switch (the snapshot index never
   * decreases), so the steps touch nothing the saves in between read or write. A snapshot
   * stored meanwhile by {@link KvLogStorage.save} (installed from a leader) at or beyond
   * this one's index supersedes it: this one is then not switched to, and its chunks are
   * deleted. Resolves once every step is done; a failed step fails the store as a failed
   * save does.
   *
   * @throws {StorageError} when a write fails, or the store was closed before the last step.
   * @throws {Error} "InvariantError" when the snapshot is older than the stored one, or its
   * term differs from the log's at its index: a programming error.
   */
  async saveSnapshotAndCompact(snapshot: Snapshot): Promise<void> {
    const operation = "save a snapshot";
    const { data, meta } = snapshot;
    const { id, basedOn } = await this.#run(operation, async () => {
      this.#restoredAtOpen = null;
      await this.#checkSnapshot(snapshot, null);
      return { id: this.#nextSnapshotId++, basedOn: this.#snapshotRecord };
    });
    // The CRC-32 goes step by step with the chunks, not in one go before them: a compaction
    // runs beside the server's loop, which a multi-megabyte checksum would stall.
    const chunkCount = chunkCountOf(data);
    let crc = crc32Start;
    for (let first = 0; first < chunkCount; first += snapshotChunksPerStep) {
      const mutations: Mutation[] = [];
      for (
        let chunk = first;
        chunk < Math.min(first + snapshotChunksPerStep, chunkCount);
        chunk++
      ) {
        const bytes = chunkBytes(data, chunk);
        crc = crc32Update(crc, bytes);
        mutations.push({ type: "set", key: snapshotChunkKey(id, chunk), value: bytes });
      }
      await this.#run(operation, () => commit(this.#kv, mutations));
    }
    const record = snapshotRecordOf(id, snapshot, crc32Finish(crc));
    const garbage = await this.#run(operation, async () => {
      const current = this.#snapshotRecord;
      if (current !== basedOn && meta.index <= this.#snapshotIndex) {
        // Superseded by a snapshot installed meanwhile: never switched to.
        return { switched: false, chunks: chunkKeysOf(record) };
      }
      await this.#checkSnapshot(snapshot, null);
      await this.#switchSnapshot(record, null);
      return { switched: true, chunks: current === null ? [] : chunkKeysOf(current) };
    });
    // The log segments the snapshot made dead (every entry at or below its index), a few
    // per step; found again at each step (a save meanwhile may have deleted some already).
    for (let more = garbage.switched; more;) {
      more = await this.#run(operation, () => this.#deleteDeadSegments(compactionDeletesPerStep));
    }
    for (let first = 0; first < garbage.chunks.length; first += compactionDeletesPerStep) {
      const keys = garbage.chunks.slice(first, first + compactionDeletesPerStep);
      await this.#run(operation, () => this.#deleteKeys(keys));
    }
  }

  /**
   * Closes the store and releases the data directory. Operations still running fail;
   * await them first.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#failure === null) {
      const floor = this.#currentFloor();
      if (!sameFloor(floor, this.#floor)) {
        try {
          writeFloor(this.#context.dataDir, floor);
        } catch {
          // Only a lower bound: the one written before (or none) stays true.
        }
      }
    }
    this.#kv.close();
    this.#lockFile.close();
  }

  // -------------------------------------------------------------------------------------

  /** Runs `body` after every operation called before it; a failure poisons the store. */
  #run<T>(operation: string, body: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(async () => {
      if (this.#closed) {
        throw new StorageError(this.#context.dataDir, `Cannot ${operation} as the store is closed`);
      }
      if (this.#failure !== null) {
        throw new StorageError(
          this.#context.dataDir,
          `Cannot ${operation} as an earlier write to ${this.#context.kvPath} failed`,
          { cause: this.#failure },
        );
      }
      try {
        return await body();
      } catch (error) {
        if (
          error instanceof Error &&
          (error.name === "InvariantError" || error instanceof StorageError)
        ) {
          this.#failure = error;
          throw error;
        }
        const failure = new StorageError(
          this.#context.dataDir,
          `Cannot ${operation} in the Raft store at ${this.#context.kvPath}: ${String(error)}`,
          { cause: error },
        );
        this.#failure = failure;
        throw failure;
      }
    });
    this.#tail = result.then(() => undefined, () => undefined);
    return result;
  }

  /** The durable state as a floor: every save before this call has resolved. */
  #currentFloor(): Floor {
    return {
      clusterId: this.#context.clusterId,
      nodeId: this.#context.nodeId,
      term: this.#hardState.term,
      vote: this.#hardState.vote,
      commit: Math.max(this.#hardState.commit, this.#snapshotIndex),
    };
  }

  /**
   * Writes the floor after a save resolved (its state is durable, so the floor never gets
   * ahead of the store), at most once per {@link floorIntervalMs}. A failed write leaves
   * the previous floor, which is still a lower bound.
   */
  #maybeWriteFloor(): void {
    const nowMs = performance.now();
    if (nowMs - this.#floorWrittenAtMs < floorIntervalMs) return;
    const floor = this.#currentFloor();
    if (sameFloor(floor, this.#floor)) return;
    this.#floorWrittenAtMs = nowMs;
    try {
      writeFloor(this.#context.dataDir, floor);
      this.#floor = floor;
    } catch {
      // See above: the previous floor stays true.
    }
  }

  get #snapshotIndex(): number {
    return this.#snapshotRecord?.index ?? 0;
  }

  /**
   * Commits `mutations` with the hard state (its commit capped to `lastIndex`) and the log's
   * new last index, in one atomic commit; then records both.
   */
  async #commitWithHardState(
    mutations: readonly Mutation[],
    hardState: HardState,
    lastIndex: number,
  ): Promise<void> {
    const capped = capCommit(hardState, lastIndex);
    await commit(this.#kv, [...mutations, hardStateMutation(capped, lastIndex)]);
    this.#hardState = capped;
    this.#lastIndex = lastIndex;
  }

  async #append(entries: readonly Entry[], hardState: HardState): Promise<void> {
    const first = entries[0]?.index ?? this.#lastIndex + 1;
    const newLastIndex = entries.at(-1)?.index ?? this.#lastIndex;
    invariant(
      first > this.#snapshotIndex,
      `cannot write entry ${first}: the snapshot covers up to ${this.#snapshotIndex}`,
    );
    invariant(
      first <= this.#lastIndex + 1,
      `writing entry ${first} after ${this.#lastIndex} leaves a hole`,
    );
    invariant(
      hardState.commit <= newLastIndex,
      `hard state commit ${hardState.commit} is beyond the last index ${newLastIndex}`,
    );
    const lastTerm = entries.at(-1)?.term ?? 0;
    invariant(
      lastTerm <= hardState.term,
      `entry term ${lastTerm} is beyond the hard state term ${hardState.term}`,
    );
    if (entries.length === 0) {
      await this.#commitWithHardState([], hardState, this.#lastIndex);
      return;
    }
    const segments = encodeSegments(entries);
    const units = await this.#appendUnits(segments);
    // Segments after the new last index (a replaced tail): hidden at once by the new last
    // index, deleted in the same commit if it has room, else right after.
    const tail = this.#segments.from(newLastIndex + 1);
    const hardStateCost = costOf([hardStateMutation(hardState, newLastIndex)]);
    const batch = units.flatMap((unit) => unit.mutations);
    const tailDeletes = tail.flatMap(segmentKeys).map((key): Mutation => ({ type: "delete", key }));
    if (fitsInOneCommit(addCosts(costOf([...batch, ...tailDeletes]), hardStateCost))) {
      await this.#commitWithHardState([...batch, ...tailDeletes], hardState, newLastIndex);
      this.#segments.replaceFrom(first, segments.map(segmentInfo));
      return;
    }
    if (fitsInOneCommit(addCosts(costOf(batch), hardStateCost))) {
      await this.#commitWithHardState(batch, hardState, newLastIndex);
    } else {
      // Too big for one commit: in index order, each commit ending the log after the last
      // segment it stores (or, before the first, just before `first`).
      let lastIndex = first - 1;
      let firstUnit = 0;
      const packed = packUnitsCounted(units.map((unit) => unit.mutations), hardStateCost);
      for (const { mutations, lastUnit } of packed) {
        for (const unit of units.slice(firstUnit, lastUnit + 1)) {
          lastIndex = unit.lastIndex ?? lastIndex;
        }
        firstUnit = lastUnit + 1;
        await this.#commitWithHardState(mutations, hardState, lastIndex);
      }
    }
    this.#segments.replaceFrom(first, segments.map(segmentInfo));
    await this.#deleteKeys(tail.flatMap(segmentKeys));
  }

  /**
   * The mutations that store `segments` (consecutive, from `first` = their first index on),
   * in units that must each go in one commit, in an order that keeps the log consistent at
   * every commit boundary:
   * - first, if a stored segment starts before `first` and holds it (an entry from `first`
   *   on is replaced, or the segment holds dead entries after the last index), its rewrite
   *   without its entries from `first` on;
   * - then, for each new segment, the deletion of every stored segment that starts inside
   *   its range (a unit per stored segment, with its overflow parts), then the new segment
   *   (with the deletion of the overflow parts it does not overwrite of a stored segment
   *   at its own first index).
   * So a commit never leaves two segments holding an index up to the last index it
   * records, nor a hole: it records the last index of the last new segment it stores, and
   * every stored segment starting before that is rewritten or deleted in it or before.
   */
  async #appendUnits(segments: readonly EncodedSegment[]): Promise<AppendUnit[]> {
    const first = segments[0]!.firstIndex;
    const units: AppendUnit[] = [];
    const straddling = this.#segments.find(first);
    if (straddling !== undefined && straddling.firstIndex < first) {
      units.push({ mutations: [await this.#truncatedSegment(straddling, first)], lastIndex: null });
    }
    const stored = this.#segments.from(first);
    let next = 0;
    for (const segment of segments) {
      const mutations = segment.values.map((value, part): Mutation => ({
        type: "set",
        key: part === 0 ? logKey(segment.firstIndex) : logPartKey(segment.firstIndex, part),
        value,
      }));
      for (; next < stored.length && stored[next]!.firstIndex <= segment.lastIndex; next++) {
        const old = stored[next]!;
        const deletions = (keys: Deno.KvKey[]) =>
          keys.map((key): Mutation => ({ type: "delete", key }));
        if (old.firstIndex === segment.firstIndex) {
          mutations.push(...deletions(segmentKeys(old).slice(segment.values.length)));
        } else {
          units.push({ mutations: deletions(segmentKeys(old)), lastIndex: null });
        }
      }
      units.push({ mutations, lastIndex: segment.lastIndex });
    }
    return units;
  }

  /** A rewrite of `segment` without its entries from `index` on (it starts before `index`). */
  async #truncatedSegment(segment: SegmentInfo, index: number): Promise<Mutation> {
    invariant(
      segment.firstIndex < index && segment.partCount === 0,
      `segment ${segment.firstIndex} cannot be truncated at ${index}`,
    );
    const key = logKey(segment.firstIndex);
    const { value } = await this.#kv.get(key);
    const decoded = decodeSegment(segment.firstIndex, value, []);
    if (typeof decoded === "string") {
      throw new StorageError(
        this.#context.dataDir,
        `Cannot truncate the log segment ${
          renderKey(key)
        } in the Raft store at ${this.#context.kvPath} as it is damaged: ${decoded}`,
      );
    }
    const kept = encodeSegments(decoded.filter((entry) => entry.index < index));
    invariant(kept.length === 1, "a truncated segment does not fit one value");
    return { type: "set", key, value: kept[0]!.values[0]! };
  }

  /**
   * Writes the snapshot's chunks under a new id, then switches to it in one commit that
   * also sets the log's new last index, then deletes what it replaced. `hardState` is given
   * when installing a snapshot from the leader (save) and null when compacting after a
   * local snapshot.
   */
  async #storeSnapshot(snapshot: Snapshot, hardState: HardState): Promise<void> {
    await this.#checkSnapshot(snapshot, hardState);
    const previous = this.#snapshotRecord;
    const record = await this.#writeChunks(this.#nextSnapshotId++, snapshot);
    await this.#switchSnapshot(record, hardState);
    await this.#deleteDeadSegments(null);
    if (previous !== null) await this.#deleteKeys(chunkKeysOf(previous));
  }

  /**
   * Checks that `snapshot` may replace the stored one. `hardState` is given when
   * installing a snapshot from the leader (save) and null when compacting after a local
   * snapshot.
   */
  async #checkSnapshot(snapshot: Snapshot, hardState: HardState | null): Promise<void> {
    const { index, term } = snapshot.meta;
    const switchHardState = hardState ?? this.#hardState;
    invariant(Number.isSafeInteger(index) && index >= 1, `bad snapshot index ${index}`);
    invariant(
      index >= this.#snapshotIndex,
      `snapshot ${index} is older than the stored ${this.#snapshotIndex}`,
    );
    invariant(
      term <= switchHardState.term,
      `snapshot term ${term} is beyond the hard state term ${switchHardState.term}`,
    );
    if (hardState === null) {
      const termAtIndex = await this.#termAt(index);
      invariant(
        termAtIndex === null || termAtIndex === term,
        `snapshot ${index} has term ${term} but the log has term ${termAtIndex} there`,
      );
    }
  }

  /**
   * Switches to the snapshot of `record`, whose chunks are durable, in one commit that also
   * sets the log's new last index (and `hardState`, or the current one when null). The log
   * segments that hold no entry after the snapshot's index or none up to the new last
   * index are dead from then on (see {@link KvLogStorage.#deleteDeadSegments}).
   */
  async #switchSnapshot(record: SnapshotRecord, hardState: HardState | null): Promise<void> {
    const { index, term } = record;
    const termAtIndex = await this.#termAt(index);
    // Raft figure 13: keep the entries after the snapshot only if the log has its last entry.
    const keepSuffix = termAtIndex === term;
    const lastIndex = keepSuffix ? Math.max(this.#lastIndex, index) : index;
    await this.#commitWithHardState(
      [{ type: "set", key: snapshotKey, value: record }],
      hardState ?? this.#hardState,
      lastIndex,
    );
    this.#snapshotRecord = record;
  }

  /**
   * Deletes log segments that hold no entry of the log (every entry at or below the
   * snapshot's index, or after the last index), at most `keysMax` keys (null: all), each
   * segment with its overflow parts in one commit.
   * @returns true when it deleted something with a limit (more may be dead).
   */
  async #deleteDeadSegments(keysMax: number | null): Promise<boolean> {
    const dead = this.#segments.dead(
      this.#snapshotIndex,
      this.#lastIndex,
      keysMax ?? Number.POSITIVE_INFINITY,
    );
    await this.#deleteKeys(dead.flatMap(segmentKeys));
    this.#segments.remove(dead);
    return keysMax !== null && dead.length > 0;
  }

  /**
   * Deletes keys nothing refers to any more, in as many commits as needed; the keys of one
   * log segment (head and overflow parts, consecutive in `keys`) in the same commit.
   */
  async #deleteKeys(keys: readonly Deno.KvKey[]): Promise<void> {
    for (const mutations of packUnits(deletionUnits(keys), emptyCost)) {
      await commit(this.#kv, mutations);
    }
  }

  /** Writes the chunks of a snapshot under `id`; nothing refers to them yet. */
  async #writeChunks(id: bigint, snapshot: Snapshot): Promise<SnapshotRecord> {
    const { data } = snapshot;
    const units: Unit[] = [];
    let crc = crc32Start;
    for (let chunk = 0; chunk < chunkCountOf(data); chunk++) {
      const bytes = chunkBytes(data, chunk);
      crc = crc32Update(crc, bytes);
      units.push([{ type: "set", key: snapshotChunkKey(id, chunk), value: bytes }]);
    }
    for (const mutations of packUnits(units, emptyCost)) await commit(this.#kv, mutations);
    return snapshotRecordOf(id, snapshot, crc32Finish(crc));
  }

  /** Term of the entry at `index`: from the log, the snapshot, or null when unknown. */
  async #termAt(index: number): Promise<number | null> {
    if (index === this.#snapshotIndex) return this.#snapshotRecord?.term ?? null;
    if (index < this.#snapshotIndex || index > this.#lastIndex) return null;
    const segment = this.#segments.find(index);
    invariant(segment !== undefined, `no log segment holds entry ${index} of the log`);
    const key = logKey(segment.firstIndex);
    const { value } = await this.#kv.get(key);
    const term = termInSegment(segment.firstIndex, value, index);
    if (typeof term === "string") {
      throw new StorageError(
        this.#context.dataDir,
        `Cannot read entry ${index} in the log segment ${
          renderKey(key)
        } of the Raft store at ${this.#context.kvPath}: ${term}`,
      );
    }
    return term;
  }
}

// ---------------------------------------------------------------------------------------

/** The record of `snapshot` stored under `id`, whose data has the CRC-32 `crc32`. */
function snapshotRecordOf(id: bigint, snapshot: Snapshot, crc32: number): SnapshotRecord {
  const { data, meta } = snapshot;
  return {
    id,
    index: meta.index,
    term: meta.term,
    voters: [...meta.voters],
    byteLength: data.length,
    chunkCount: chunkCountOf(data),
    crc32,
  };
}

/** Number of KV values snapshot data of this size is stored in. */
function chunkCountOf(data: Uint8Array): number {
  return Math.ceil(data.length / kvLimits.valueBytesMax);
}

/** Chunk `chunk` of snapshot data, copied: a stored view would carry its whole buffer. */
function chunkBytes(data: Uint8Array, chunk: number): Uint8Array {
  return data.slice(chunk * kvLimits.valueBytesMax, (chunk + 1) * kvLimits.valueBytesMax);
}

async function lockDataDir(dataDir: string): Promise<Deno.FsFile> {
  const lockPath = join(dataDir, lockFileName);
  let lockFile: Deno.FsFile;
  try {
    await Deno.mkdir(dataDir, { recursive: true });
    lockFile = await Deno.open(lockPath, { read: true, write: true, create: true });
  } catch (error) {
    throw new StorageError(dataDir, `Cannot open the data directory ${dataDir}: ${String(error)}`, {
      cause: error,
    });
  }
  if (!(await lockFile.tryLock(true))) {
    lockFile.close();
    throw new StorageError(
      dataDir,
      `Cannot open the Raft store in ${dataDir} as another process (or another store object) holds its lock file ${lockPath}`,
    );
  }
  return lockFile;
}

/** Makes the directory entries of the store's files (and the directory) durable. */
async function syncDirectory(dataDir: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  for (const directory of [dataDir, dirname(dataDir)]) {
    const handle = await Deno.open(directory, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  }
}

function checkEntries(entries: readonly Entry[]): void {
  const first = entries[0];
  if (first === undefined) return;
  invariant(
    Number.isSafeInteger(first.index) && first.index >= 1,
    `bad entry index ${first.index}`,
  );
  for (const [i, entry] of entries.entries()) {
    invariant(entry.index === first.index + i, `entries are not contiguous at ${entry.index}`);
    invariant(entry.data instanceof Uint8Array, `entry ${entry.index} has no byte data`);
    const previous = entries[i - 1];
    invariant(
      previous === undefined || previous.term <= entry.term,
      `entry terms decrease at ${entry.index}`,
    );
  }
}

/**
 * Deletions of `keys`, one unit per key except the keys of one log entry (head and
 * overflow parts, consecutive in `keys`), which share a unit: a crash between commits
 * never leaves an entry's later parts without its earlier ones (which open would refuse).
 */
function deletionUnits(keys: readonly Deno.KvKey[]): Unit[] {
  const units: Mutation[][] = [];
  let previousIndex: bigint | null = null;
  for (const key of keys) {
    const index = key[0] === logPrefix && typeof key[1] === "bigint" ? key[1] : null;
    const mutation: Mutation = { type: "delete", key };
    const unit = units.at(-1);
    if (index !== null && index === previousIndex && unit !== undefined) unit.push(mutation);
    else units.push([mutation]);
    previousIndex = index;
  }
  return units;
}

function chunkKeysOf(record: SnapshotRecord): Deno.KvKey[] {
  return Array.from(
    { length: record.chunkCount },
    (_, chunk) => snapshotChunkKey(record.id, chunk),
  );
}

/**
 * Mutations of an append that go in one commit; `lastIndex` is the last entry of the new
 * segment they store, or null for a rewrite or deletions of stored segments.
 */
interface AppendUnit {
  readonly mutations: Mutation[];
  readonly lastIndex: number | null;
}

function segmentInfo(segment: EncodedSegment): SegmentInfo {
  return {
    firstIndex: segment.firstIndex,
    lastIndex: segment.lastIndex,
    partCount: segment.values.length - 1,
  };
}

function hardStateMutation(hardState: HardState, lastIndex: number): Mutation {
  return { type: "set", key: hardStateKey, value: storedHardState(hardState, lastIndex) };
}

function capCommit(hardState: HardState, lastIndex: number): HardState {
  return {
    term: hardState.term,
    vote: hardState.vote,
    commit: Math.min(hardState.commit, lastIndex),
  };
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameFloor(a: Floor, b: Floor | null): boolean {
  return b !== null && a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
