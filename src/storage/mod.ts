/**
 * Durable storage of one Raft server: log, hard state and snapshots in Deno KV, in the
 * server's data directory (`<dataDir>/raft.kv`, locked through `<dataDir>/raft.lock`).
 *
 * ## Layout
 * - `["format"]`: `{clusterId, nodeId, formatVersion}`, written when the store is created.
 * - `["hardState"]`: `{term, vote, commit, lastIndex}`: the Raft hard state and the index
 *   of the log's last entry. Entries after `lastIndex` are leftovers of a truncation.
 * - `["log", index: bigint]`: one entry, encoded compactly as bytes (kind, term, data
 *   length, CRC-32, data); an entry bigger than one KV value (64 KiB) continues in
 *   `["log", index, 1]`, `["log", index, 2]`, …. Keys sort by index, so a suffix or a
 *   prefix of the log is a key range (listed with a selector, deleted in batches).
 * - `["snapshot"]`: the current snapshot's meta, id, size, chunk count and CRC-32.
 *   Entries at or below its index are leftovers of a compaction.
 * - `["snapshotChunk", id: bigint, chunk]`: its data in chunks of 64 KiB.
 *
 * ## Consistency after a crash at any moment
 * A store is consistent when: the stamp matches; the log holds every entry from
 * `snapshot.index + 1` (or 1) to `lastIndex`, with non-decreasing terms, none below the
 * snapshot's; the hard state's commit is at most `lastIndex` and its term at least the
 * last entry's; every entry and the snapshot match their checksums; every key is one of
 * the above. {@link KvLogStorage.open} refuses any other store with a
 * {@link StorageError} that says what is wrong and where; it never resets a store.
 *
 * Every write keeps these rules commit by commit:
 * - A Ready within Deno KV's limits for one atomic commit (1000 mutations, 800 KiB of keys
 *   and values, 80 KiB of keys: about 990 small entries) is ONE commit: its entries, the
 *   hard state and the new `lastIndex`. A conflicting append (which replaces the log from
 *   `entries[0].index` on) is one commit too, however long the replaced suffix: the new
 *   `lastIndex` hides it, and its keys are deleted before `save` resolves.
 * - A bigger Ready is split into commits in index order, each extending `lastIndex` and
 *   carrying the hard state with its commit capped at it. A crash leaves a prefix of the
 *   new log, which is safe since the core treats entries as persisted only once `save`
 *   resolves.
 * - A snapshot is written in chunks under a new id that nothing refers to, then switched
 *   to by one commit of `["snapshot"]` (and `lastIndex`); then the entries it covers and
 *   the old chunks are deleted. A crash before the switch leaves the old snapshot; a crash
 *   after it leaves leftovers that nothing reads.
 * - A compaction (`saveSnapshotAndCompact`) does the same in small steps, each its own
 *   commit and its own turn in the store's queue (a few chunks; the switch; a few hundred
 *   deletions), so that saves called meanwhile run between its steps: a save waits for one
 *   step, not for the whole snapshot. This is safe because no step touches what a save
 *   reads or writes: the chunks are under an id that nothing refers to (ids are never
 *   reused while the store is open), and after the switch the entries up to the snapshot's
 *   index and the old chunks are dead for good (the snapshot index never decreases, so no
 *   save writes there again). A snapshot installed by a save meanwhile (from the leader)
 *   at or beyond the compaction's index supersedes it: the compaction is then not switched
 *   to and deletes its own chunks.
 * - `open` deletes leftovers (entries outside the log's bounds, chunks of other snapshots)
 *   before anything else is written.
 *
 * ## Durability (Deno 2.9.6, checked with strace)
 * Deno KV's local backend is SQLite in WAL mode. Every commit writes its pages to the WAL
 * file and calls `fsync` on it before the commit's promise resolves (SQLite's
 * `synchronous=FULL` behaviour in WAL mode; one fsync per commit, observed with
 * `strace -f -e fsync,pwrite64`). So a resolved commit survives `kill -9` of the process
 * (the data is in the kernel's page cache, and WAL recovery at the next open replays it)
 * and a power loss (the WAL is on the disk, as far as the disk honours fsync). SQLite
 * also fsyncs the directory when it creates the WAL file; `open` fsyncs the data
 * directory and its parent once, for the store's files. A crash mid-commit loses that
 * whole commit and nothing else (SQLite's atomic commit).
 *
 * Cost: one fsync per commit, so one per `save` of a normal Ready (checked with strace:
 * 50 saves of 100 entries, 50 fsyncs). Measured with `kv_bench.ts` on the shared 2-core
 * development VM (ext4 on a virtual disk, fsync of a 4 KiB append about 0.8 ms, load
 * average 13-15 from other jobs, so the spread is wide): single-entry saves 870-4,200 per
 * second; saves of 100 entries of 100 B 210-1,220 per second (21,000-122,000 entries per
 * second); a 10 MiB snapshot about 0.15-0.4 s. A disk with a slower flush bounds saves per
 * second accordingly; group commit (one save per Ready) keeps entries per second high.
 * While a compaction with a 3 MiB snapshot and 10,000-100,000 entries persists (0.13-1.2 s,
 * `kv_bench.ts --during-snapshot`), back-to-back saves of 20 entries each wait for one
 * step: median 2.2-2.8 ms, longest 10-23 ms (without a compaction: median 0.4-0.5 ms,
 * longest 3-9 ms); done in one operation, as before the steps, a save waited for all of
 * it (130-920 ms).
 *
 * @module
 */

export {
  kvFileName,
  KvLogStorage,
  type KvLogStorageOptions,
  lockFileName,
  type StorageUpdate,
} from "./kv_log_storage.ts";
export { StorageError } from "./storage_error.ts";
export { entryDataBytesMax, formatVersion, kvLimits } from "./_codec.ts";
