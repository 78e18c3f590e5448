/**
 * Durable storage of one Raft server: log, hard state and snapshots in Deno KV, in the
 * server's data directory (`<dataDir>/raft.kv`, locked through `<dataDir>/raft.lock`),
 * with `<dataDir>/raft.floor`, a lower bound of what the store had made durable, by which
 * `open` refuses a store that went back in time (see _floor.ts).
 *
 * ## Layout (storage format version 2)
 * - `["format"]`: `{clusterId, nodeId, formatVersion}`, written when the store is created.
 *   A store of another format version is refused with a message naming it; there is no
 *   in-place upgrade while dlock is 0.x (format 1, one key per entry, is not read).
 * - `["hardState"]`: `{term, vote, commit, lastIndex}`: the Raft hard state and the index
 *   of the log's last entry. Entries after `lastIndex` are leftovers of a truncation.
 * - `["log", firstIndex: bigint]`: a log segment: the entries `firstIndex`, `firstIndex + 1`,
 *   … encoded back to back, each as kind, term, data length, CRC-32 (of those and the
 *   data) and data; at most one KV value (64 KiB) in all. A save writes its entries as few
 *   segments as fit (normally one: a Ready of 18 entries of 80 B is one value of 1.7 KB).
 *   The framing is checked when read: the entries' lengths must add up exactly to the
 *   value's size, and every entry's CRC-32 must match. An entry too big to share a value
 *   (over 64 KiB with its header) is a segment of its own whose data continues in
 *   `["log", index, 1]`, `["log", index, 2]`, …. Keys sort by index.
 * - `["snapshot"]`: the current snapshot's meta, id, size, chunk count and CRC-32.
 *   Entries at or below its index are leftovers of a compaction (dead).
 * - `["snapshotChunk", id: bigint, chunk]`: its data in chunks of 64 KiB.
 *
 * The store keeps an index of its segments in memory (first and last index of each, in
 * order; built by the scan at open and kept in step with every commit), so it knows which
 * key holds an index (for a term, a truncation or a compaction) without listing keys.
 * A segment may hold dead entries: one straddling the snapshot's index stays until a later
 * compaction passes its end (its entries up to the snapshot's index are ignored), and one
 * straddling the last index is rewritten by the next append.
 *
 * ## Consistency after a crash at any moment
 * A store is consistent when: the stamp matches; the segments that hold an entry of
 * `snapshot.index + 1` (or 1) to `lastIndex` hold each of these entries exactly once (they
 * are contiguous and do not overlap), with non-decreasing terms, none below the
 * snapshot's; the hard state's commit is at most `lastIndex` and its term at least the
 * last entry's; every segment has a sound framing and every entry and the snapshot match
 * their checksums; every key is one of the above. {@link KvLogStorage.open} refuses any
 * other store with a {@link StorageError} that says what is wrong and where (the key, the
 * index); it never resets a store.
 *
 * Every write keeps these rules commit by commit:
 * - A Ready within Deno KV's limits for one atomic commit (1000 mutations, 800 KiB of keys
 *   and values, 80 KiB of keys: about 6,900 entries of 100 B, or 12 full segments) is ONE
 *   commit: its segments, the hard state and the new `lastIndex`. An append that replaces
 *   a suffix (`entries[0].index` ≤ `lastIndex`, a follower's conflict) is one commit too:
 *   the segment holding `entries[0].index` that starts before it is rewritten with just
 *   its entries before it (read back and checked), and every segment starting inside the
 *   new entries' range is overwritten or deleted (with its overflow parts) in that same
 *   commit. Segments starting after the new `lastIndex` (the rest of the replaced suffix)
 *   are deleted in it too if it has room, else right after: the new `lastIndex` hides
 *   them at once, and `save` resolves only after they are gone.
 * - A bigger Ready is split into commits of whole segments in index order, each extending
 *   `lastIndex` and carrying the hard state with its commit capped at it, and each with
 *   the rewrite or deletions of the old segments its own segments cover (so no commit
 *   leaves two segments holding an index up to the `lastIndex` it records). A crash
 *   leaves a prefix of the new log, which is safe since the core treats entries as
 *   persisted only once `save` resolves.
 * - A snapshot is written in chunks under a new id that nothing refers to, then switched
 *   to by one commit of `["snapshot"]` (and `lastIndex`); then the segments left without
 *   an entry of the log (every entry at or below its index, or, when a snapshot from the
 *   leader replaces the whole log, all of them) and the old chunks are deleted. A crash
 *   before the switch leaves the old snapshot; a crash after it leaves leftovers that
 *   nothing reads.
 * - A compaction (`saveSnapshotAndCompact`) does the same in small steps, each its own
 *   commit and its own turn in the store's queue (a few chunks; the switch; deletions of
 *   dead segments, at most 256 keys, a segment with its overflow parts in one commit), so
 *   that saves called meanwhile run between its steps: a save waits for one step, not for
 *   the whole snapshot. This is safe because no step touches what a save reads or writes:
 *   the chunks are under an id that nothing refers to (ids are never reused while the
 *   store is open), and after the switch the segments whose last entry is at or below
 *   the snapshot's index and the old chunks are dead for good (the snapshot index never
 *   decreases, so no save writes there again; a segment straddling that index stays). A
 *   snapshot installed by a save meanwhile (from the leader) at or beyond the
 *   compaction's index supersedes it: the compaction is then not switched to and deletes
 *   its own chunks.
 * - `open` deletes leftovers (segments without an entry inside the log's bounds, chunks of
 *   other snapshots) before anything else is written.
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
 * Cost: one fsync per commit, so one per `save` of a normal Ready (checked with strace,
 * in format 1 and again in format 2: 50 saves of 100 entries, 50 fsyncs). Each commit also costs CPU in Deno KV's SQLite thread per key written or
 * deleted, which is why the log is in segments: a Ready of 18 entries is 2 keys (segment
 * and hard state) instead of 19, and a compaction of 10,000 entries saved 18 at a time
 * deletes about 560 keys instead of 10,000. Measured with `kv_bench.ts` (process CPU from
 * `/proc/self/stat`, all threads) on the shared 2-core development VM (ext4 on a virtual
 * disk, load average 4-7 from other jobs, so the spread is wide), format 2 against format
 * 1 on the same runs:
 * - saves of 18 entries of 80 B: 0.27-0.44 ms and 190-250 µs of CPU each (format 1:
 *   0.35-0.66 ms, 260-340 µs); single-entry saves about 3,000-3,600 per second (one key
 *   either way); saves of 900 entries of 100 B 1.5-4.3 ms (format 1: 4.4-21 ms);
 * - a compaction of 10,000 entries saved 18 per save: with a 3 MiB snapshot 30-130 ms and
 *   20-40 ms of CPU (format 1: 94-1,560 ms, 80-130 ms of CPU), with a 100 kB snapshot
 *   about 10 ms of CPU (format 1: 100-140 ms); a 10 MiB snapshot about 0.1-0.3 s;
 * - while a compaction with a 3 MiB snapshot of 10,000-100,000 entries persists (40-84 ms;
 *   format 1: 156-1,108 ms, as its deletions took 40-390 steps where format 2 takes 2-20),
 *   back-to-back saves of 20 entries each wait for one step (now mostly a step of the
 *   snapshot's chunks): median 1.7-2.1 ms, longest 9-10 ms (without a compaction: median
 *   0.3 ms, longest about 2 ms); on a busier minute, medians of 4.5-7 ms and outliers of
 *   50-250 ms that the runs without a compaction showed too (35-40 ms).
 * A disk with a slower flush bounds saves per second accordingly; group commit (one save
 * per Ready) keeps entries per second high.
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
