import assert from "node:assert/strict";
import { join } from "node:path";
import type { Entry, HardState, Snapshot } from "../raft/types.ts";
import { kvFileName, KvLogStorage, StorageError } from "./mod.ts";
import { costOf, fitsInOneCommit, type Mutation } from "./_commits.ts";
import {
  encodeEntry,
  encodeSegments,
  hardStateKey,
  logKey,
  logPartKey,
  segmentFrames,
} from "./_codec.ts";

const ids = { clusterId: "cluster-a", nodeId: "127.0.0.1:5000" };

/**
 * Opens the store, retrying for a while when its lock file is held: with `deno test
 * --parallel`, a test in another module of this process may be spawning a child process,
 * and a forked child holds every open file (our closed store's lock too) until its exec.
 */
async function openStore(dataDir: string): Promise<KvLogStorage> {
  for (const started = Date.now();;) {
    try {
      return await KvLogStorage.open({ dataDir, ...ids });
    } catch (error) {
      const held = error instanceof StorageError && /holds its lock file/.test(error.message);
      if (!held || Date.now() - started > 5_000) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

async function withStore(body: (dataDir: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "dlock_storage_" });
  try {
    await body(join(root, "data"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

function entry(index: number, term: number, bytes = 16): Entry {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (index * 31 + i) & 0xff;
  return { index, term, kind: index % 7 === 0 ? "noop" : "normal", data };
}

function entries(from: number, to: number, term: number, bytes = 16): Entry[] {
  const list: Entry[] = [];
  for (let index = from; index <= to; index++) list.push(entry(index, term, bytes));
  return list;
}

function randomBytes(length: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65_536) {
    crypto.getRandomValues(data.subarray(offset, Math.min(length, offset + 65_536)));
  }
  return data;
}

async function reopenAndLoad(dataDir: string) {
  const storage = await openStore(dataDir);
  try {
    return await storage.load();
  } finally {
    storage.close();
  }
}

/** Every key of the raw KV file, rendered, with the store closed. */
async function rawKeys(dataDir: string): Promise<Deno.KvKey[]> {
  const kv = await Deno.openKv(join(dataDir, kvFileName));
  try {
    const keys: Deno.KvKey[] = [];
    for await (const { key } of kv.list({ prefix: [] })) keys.push(key);
    return keys;
  } finally {
    kv.close();
  }
}

/** The log segments of the raw KV file (entries from their framing), with the store closed. */
async function rawSegments(
  dataDir: string,
): Promise<{ firstIndex: number; lastIndex: number; partCount: number }[]> {
  const kv = await Deno.openKv(join(dataDir, kvFileName));
  try {
    const segments: { firstIndex: number; lastIndex: number; partCount: number }[] = [];
    for await (const { key, value } of kv.list({ prefix: ["log"] })) {
      const firstIndex = Number(key[1]);
      if (key.length === 3) {
        const last = segments.at(-1);
        assert.ok(last !== undefined && last.firstIndex === firstIndex, "a part without a head");
        segments[segments.length - 1] = { ...last, partCount: last.partCount + 1 };
        continue;
      }
      const frames = segmentFrames(firstIndex, value);
      assert.ok(typeof frames !== "string", `segment ${firstIndex}: ${frames}`);
      segments.push({
        firstIndex,
        lastIndex: firstIndex + frames.offsets.length - 1,
        partCount: 0,
      });
    }
    return segments;
  } finally {
    kv.close();
  }
}

/**
 * Asserts that the raw store holds just the segments of the log (snapshot index, last
 * index]: contiguous, no segment without a live entry (a leftover of a compaction or a
 * truncation).
 */
async function assertOnlyLiveSegments(
  dataDir: string,
  snapshotIndex: number,
  lastIndex: number,
  context = "",
): Promise<void> {
  const segments = await rawSegments(dataDir);
  if (lastIndex === snapshotIndex) {
    assert.deepEqual(segments, [], `${context}: segments of an empty log remain`);
    return;
  }
  assert.ok(segments.length > 0, `${context}: no segment`);
  assert.ok(segments[0]!.firstIndex <= snapshotIndex + 1, `${context}: the log starts late`);
  assert.ok(segments[0]!.lastIndex > snapshotIndex, `${context}: a dead segment remains`);
  for (let i = 1; i < segments.length; i++) {
    assert.equal(segments[i]!.firstIndex, segments[i - 1]!.lastIndex + 1, `${context}: a gap`);
  }
  assert.equal(segments.at(-1)!.lastIndex, lastIndex, `${context}: the log ends elsewhere`);
}

Deno.test("a new store loads empty and is stamped", async () => {
  await withStore(async (dataDir) => {
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored, {
      hardState: { term: 0, vote: null, commit: 0 },
      snapshot: null,
      entries: [],
    });
    const keys = await rawKeys(dataDir);
    assert.deepEqual(keys, [["format"], ["hardState"]]);
  });
});

Deno.test("round trip: entries, hard state and snapshot survive close and reopen", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    const log = [...entries(1, 10, 1), ...entries(11, 30, 2, 300)];
    const hardState: HardState = { term: 2, vote: "127.0.0.1:5001", commit: 25 };
    await storage.save({ hardState: { ...hardState, commit: 5 }, entries: log.slice(0, 10) });
    await storage.save({ hardState, entries: log.slice(10) });
    const snapshot: Snapshot = {
      meta: { index: 12, term: 2, voters: ["a", "b", "c"] },
      data: randomBytes(1000),
    };
    await storage.saveSnapshotAndCompact(snapshot);
    assert.deepEqual(await storage.load(), { hardState, snapshot, entries: log.slice(12) });
    storage.close();
    assert.deepEqual(await reopenAndLoad(dataDir), { hardState, snapshot, entries: log.slice(12) });
    // A hard state alone (a vote in a new term).
    const voted: HardState = { term: 3, vote: "127.0.0.1:5002", commit: 25 };
    const again = await openStore(dataDir);
    await again.save({ hardState: voted, entries: [] });
    again.close();
    assert.deepEqual(await reopenAndLoad(dataDir), {
      hardState: voted,
      snapshot,
      entries: log.slice(12),
    });
  });
});

Deno.test("entries bigger than one KV value are stored in parts and replaced whole", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    const big = [entry(1, 1, 65_536), entry(2, 1, 200_000), entry(3, 1, 0), entry(4, 1, 140_000)];
    await storage.save({ hardState: { term: 1, vote: null, commit: 1 }, entries: big });
    // Conflict at 2: the parts of the old entries 2 and 4 must go.
    const replacement = [entry(2, 2, 10), entry(3, 2, 70_000)];
    await storage.save({ hardState: { term: 2, vote: null, commit: 1 }, entries: replacement });
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.entries, [big[0], ...replacement]);
    const logKeys = (await rawKeys(dataDir)).filter((key) => key[0] === "log");
    assert.deepEqual(logKeys, [["log", 1n], ["log", 1n, 1], ["log", 2n], ["log", 3n], [
      "log",
      3n,
      1,
    ]]);
  });
});

Deno.test("a conflicting append truncates the persisted suffix", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 1, vote: "x", commit: 3 },
      entries: entries(1, 10, 1),
    });
    await storage.save({
      hardState: { term: 2, vote: null, commit: 5 },
      entries: entries(6, 7, 2),
    });
    const expected = [...entries(1, 5, 1), ...entries(6, 7, 2)];
    assert.deepEqual((await storage.load()).entries, expected);
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.entries, expected);
    assert.deepEqual(restored.hardState, { term: 2, vote: null, commit: 5 });
  });
});

Deno.test("a batch too big for one commit is split and a long suffix is truncated", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    // 2,500 entries of 417 bytes (1 MB, 17 segments): two commits.
    await storage.save({
      hardState: { term: 1, vote: null, commit: 50 },
      entries: entries(1, 2_500, 1, 400),
    });
    // Then 1,000 one-entry segments: a tail too long to delete in the replacing commit.
    for (let index = 2_501; index <= 3_500; index++) {
      await storage.save({ entries: [entry(index, 1)] });
    }
    // Conflict at 100, 1,300 new entries: the old 100..3500 go, the tail after the commit.
    const replacement = entries(100, 1_399, 2, 400);
    await storage.save({ hardState: { term: 2, vote: null, commit: 1_300 }, entries: replacement });
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.entries, [...entries(1, 99, 1, 400), ...replacement]);
    assert.deepEqual(restored.hardState, { term: 2, vote: null, commit: 1_300 });
    await assertOnlyLiveSegments(dataDir, 0, 1_399);
  });
});

Deno.test("a normal Ready is one segment and one commit; 13 entries of 64 KiB are not", () => {
  const hardState: Mutation = {
    type: "set",
    key: hardStateKey,
    value: { term: 1, vote: "127.0.0.1:5000", commit: 1 },
  };
  const mutations = (count: number, bytes: number) =>
    encodeSegments(entries(1, count, 1, bytes)).flatMap((segment) =>
      segment.values.map((value, part): Mutation => ({
        type: "set",
        key: part === 0 ? logKey(segment.firstIndex) : logPartKey(segment.firstIndex, part),
        value,
      }))
    );
  assert.equal(encodeSegments(entries(1, 18, 1, 80)).length, 1);
  assert.equal(encodeSegments(entries(1, 1_024, 1, 16)).length, 1);
  assert.equal(encodeSegments(entries(1, 990, 1, 100)).length, 2);
  assert.ok(fitsInOneCommit(costOf([...mutations(990, 100), hardState])));
  assert.ok(fitsInOneCommit(costOf([...mutations(1_024, 16), hardState])));
  assert.ok(fitsInOneCommit(costOf([...mutations(10, 64 * 1024 - 100), hardState])));
  assert.ok(!fitsInOneCommit(costOf([...mutations(13, 64 * 1024 - 100), hardState])));
  assert.ok(!fitsInOneCommit(costOf([...mutations(8_000, 100), hardState])));
});

Deno.test("the largest batch judged to fit one commit is accepted by Deno KV", async () => {
  // Guards the size estimates against KV's real limits (1000 mutations, 800 KiB, 80 KiB keys).
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 1, vote: null, commit: 0 },
      entries: entries(1, 999, 1, 700),
    });
    await storage.save({ entries: entries(1_000, 1_011, 1, 65_000) });
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.equal(restored.entries.length, 1_011);
    assert.deepEqual(restored.entries.at(-1), entry(1_011, 1, 65_000));
  });
});

Deno.test("compaction deletes the segments up to the snapshot and old snapshot chunks", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    for (let first = 1; first <= 100; first += 10) {
      await storage.save({
        hardState: { term: 3, vote: null, commit: Math.min(90, first + 9) },
        entries: entries(first, first + 9, 3),
      });
    }
    const first: Snapshot = {
      meta: { index: 60, term: 3, voters: ["a"] },
      data: randomBytes(200_000),
    };
    await storage.saveSnapshotAndCompact(first);
    const second: Snapshot = {
      meta: { index: 90, term: 3, voters: ["a", "b"] },
      data: randomBytes(70_000),
    };
    await storage.saveSnapshotAndCompact(second);
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.snapshot, second);
    assert.deepEqual(restored.entries, entries(91, 100, 3));
    const keys = await rawKeys(dataDir);
    assert.deepEqual(keys.filter((key) => key[0] === "log"), [["log", 91n]]);
    const chunks = keys.filter((key) => key[0] === "snapshotChunk");
    assert.deepEqual(chunks, [["snapshotChunk", 2n, 0], ["snapshotChunk", 2n, 1]]);
  });
});

Deno.test("a snapshot of more than 5 MB is chunked and replaced", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 1, vote: null, commit: 10 },
      entries: entries(1, 10, 1),
    });
    const big: Snapshot = {
      meta: { index: 10, term: 1, voters: ["a", "b", "c"] },
      data: randomBytes(6_000_001),
    };
    await storage.saveSnapshotAndCompact(big);
    storage.close();
    assert.deepEqual((await reopenAndLoad(dataDir)).snapshot, big);
    const chunkCount = (await rawKeys(dataDir)).filter((key) => key[0] === "snapshotChunk").length;
    assert.equal(chunkCount, Math.ceil(6_000_001 / 65_536));

    // Installed from a leader, beyond the log: the log and the old chunks are gone.
    const reopened = await openStore(dataDir);
    const installed: Snapshot = {
      meta: { index: 500, term: 4, voters: ["a"] },
      data: randomBytes(5_500_000),
    };
    await reopened.save({
      snapshot: installed,
      hardState: { term: 4, vote: null, commit: 500 },
      entries: [],
    });
    reopened.close();
    assert.deepEqual(await reopenAndLoad(dataDir), {
      hardState: { term: 4, vote: null, commit: 500 },
      snapshot: installed,
      entries: [],
    });
    const ids2 = new Set(
      (await rawKeys(dataDir)).filter((key) => key[0] === "snapshotChunk").map((key) => key[1]),
    );
    assert.deepEqual([...ids2], [2n]);
  });
});

Deno.test("installing a snapshot keeps the log after it only if the terms match (Raft figure 13)", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 2, vote: null, commit: 5 },
      entries: [...entries(1, 10, 1), ...entries(11, 20, 2)],
    });
    const matching: Snapshot = {
      meta: { index: 8, term: 1, voters: ["a"] },
      data: randomBytes(10),
    };
    await storage.save({
      snapshot: matching,
      hardState: { term: 2, vote: null, commit: 8 },
      entries: [],
    });
    assert.deepEqual(
      (await storage.load()).entries,
      entries(9, 20, 2).map((e) => e.index <= 10 ? entry(e.index, 1) : e),
    );
    const conflicting: Snapshot = {
      meta: { index: 15, term: 3, voters: ["a"] },
      data: randomBytes(10),
    };
    await storage.save({
      snapshot: conflicting,
      hardState: { term: 3, vote: null, commit: 15 },
      entries: entries(16, 17, 3),
    });
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.snapshot, conflicting);
    assert.deepEqual(restored.entries, entries(16, 17, 3));
    assert.deepEqual(restored.hardState, { term: 3, vote: null, commit: 15 });
  });
});

Deno.test("open completes an interrupted compaction: covered entries and stray chunks go", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 1, vote: null, commit: 20 },
      entries: entries(1, 20, 1),
    });
    await storage.saveSnapshotAndCompact({
      meta: { index: 10, term: 1, voters: ["a"] },
      data: randomBytes(100),
    });
    storage.close();
    // What a crash right after the switch, or during a chunk write, leaves behind.
    const kv = await Deno.openKv(join(dataDir, kvFileName));
    const stale = encodeEntry(entry(3, 1));
    await kv.atomic()
      .set(logKey(3), stale[0]!)
      .set(["snapshotChunk", 7n, 0], new Uint8Array(10))
      .set(["snapshotChunk", 0n, 4], new Uint8Array(10))
      .commit();
    kv.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.entries, entries(11, 20, 1));
    const keys = await rawKeys(dataDir);
    assert.ok(!keys.some((key) => key[0] === "log" && key[1] === 3n));
    assert.deepEqual(keys.filter((key) => key[0] === "snapshotChunk"), [["snapshotChunk", 1n, 0]]);
  });
});

Deno.test("a second open of the same data directory is refused while the first is open", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await assert.rejects(
      KvLogStorage.open({ dataDir, ...ids }),
      (error: unknown) =>
        error instanceof StorageError && /holds its lock file/.test(error.message),
    );
    storage.close();
    (await openStore(dataDir)).close();
  });
});

Deno.test("a save that breaks the contract throws and poisons the store", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 1, vote: null, commit: 0 },
      entries: entries(1, 5, 1),
    });
    await assert.rejects(storage.save({ entries: entries(8, 9, 1) }), /leaves a hole/);
    await assert.rejects(storage.save({ entries: entries(6, 6, 1) }), /an earlier write/);
    storage.close();
    assert.deepEqual((await reopenAndLoad(dataDir)).entries, entries(1, 5, 1));
  });
});

Deno.test("operations run in call order without waiting in between", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    const pending: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) {
      pending.push(
        storage.save({
          hardState: { term: 1, vote: null, commit: i * 5 },
          entries: entries(i * 5 + 1, i * 5 + 5, 1),
        }),
      );
      if (i === 10) {
        pending.push(
          storage.saveSnapshotAndCompact({
            meta: { index: 40, term: 1, voters: ["a"] },
            data: randomBytes(10),
          }),
        );
      }
    }
    await Promise.all(pending);
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.equal(restored.snapshot?.meta.index, 40);
    assert.deepEqual(restored.entries, entries(41, 100, 1));
  });
});

Deno.test("a compaction runs in steps: saves called meanwhile do not wait for all of it", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    for (let first = 1; first <= 2_000; first += 500) {
      await storage.save({
        hardState: { term: 1, vote: null, commit: first + 499 },
        entries: entries(first, first + 499, 1),
      });
    }
    await storage.saveSnapshotAndCompact({
      meta: { index: 100, term: 1, voters: ["a"] },
      data: randomBytes(70_000),
    });
    const snapshot: Snapshot = {
      meta: { index: 1_500, term: 1, voters: ["a"] },
      data: randomBytes(1_000_000),
    };
    const order: string[] = [];
    const compaction = storage.saveSnapshotAndCompact(snapshot).then(() => {
      order.push("compaction");
    });
    for (let i = 0; i < 3; i++) {
      const first = 2_001 + i * 10;
      await storage.save({ entries: entries(first, first + 9, 1) });
      order.push(`save ${i}`);
    }
    await compaction;
    // 16 chunks in 4 steps, the switch, 6 steps of deletions: the saves went in between.
    assert.deepEqual(order, ["save 0", "save 1", "save 2", "compaction"]);
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.snapshot, snapshot);
    assert.deepEqual(restored.entries, entries(1_501, 2_030, 1));
    const keys = await rawKeys(dataDir);
    assert.equal(keys.find((key) => key[0] === "log")?.[1], 1_501n);
    const chunkIds = new Set(keys.filter((key) => key[0] === "snapshotChunk").map((key) => key[1]));
    assert.deepEqual([...chunkIds], [2n]);
  });
});

Deno.test("a snapshot installed from the leader at any step of a compaction wins over it", async () => {
  // A compaction of 10 chunks (3 steps) and 600 entries (3 steps) after a first snapshot
  // (its chunks: 1 step). Each awaited save lets one step run, so the installation lands
  // before, between and after every step in turn.
  for (let savesBefore = 0; savesBefore <= 10; savesBefore++) {
    await withStore(async (dataDir) => {
      const storage = await openStore(dataDir);
      await storage.save({
        hardState: { term: 1, vote: null, commit: 700 },
        entries: entries(1, 800, 1),
      });
      await storage.saveSnapshotAndCompact({
        meta: { index: 50, term: 1, voters: ["a"] },
        data: randomBytes(1_000),
      });
      const compacted: Snapshot = {
        meta: { index: 650, term: 1, voters: ["a"] },
        data: randomBytes(600_000),
      };
      const compaction = storage.saveSnapshotAndCompact(compacted);
      let lastIndex = 800;
      for (let i = 0; i < savesBefore; i++) {
        await storage.save({ entries: entries(lastIndex + 1, lastIndex + 5, 1) });
        lastIndex += 5;
      }
      // Alternately beyond the log (which it replaces) and inside it with a matching term.
      const beyond = savesBefore % 2 === 0;
      const installed: Snapshot = beyond
        ? { meta: { index: lastIndex + 50, term: 2, voters: ["a"] }, data: randomBytes(200_000) }
        : { meta: { index: 700, term: 1, voters: ["a"] }, data: randomBytes(200_000) };
      const hardState: HardState = beyond
        ? { term: 2, vote: null, commit: installed.meta.index }
        : { term: 1, vote: null, commit: 700 };
      await storage.save({ snapshot: installed, hardState, entries: [] });
      await compaction;
      const next = beyond ? installed.meta.index + 1 : lastIndex + 1;
      await storage.save({ entries: entries(next, next + 4, hardState.term) });
      storage.close();
      const restored = await reopenAndLoad(dataDir);
      assert.deepEqual(restored.snapshot, installed, `installed after ${savesBefore} saves`);
      assert.deepEqual(
        restored.entries,
        beyond ? entries(next, next + 4, 2) : entries(701, next + 4, 1),
      );
      const keys = await rawKeys(dataDir);
      await assertOnlyLiveSegments(
        dataDir,
        installed.meta.index,
        next + 4,
        `after ${savesBefore} saves`,
      );
      const chunkIds = new Set(
        keys.filter((key) => key[0] === "snapshotChunk").map((key) => key[1]),
      );
      assert.equal(chunkIds.size, 1, `after ${savesBefore} saves: ${[...chunkIds]}`);
    });
  }
});

Deno.test("steps of a compaction after close fail with a StorageError", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 1, vote: null, commit: 100 },
      entries: entries(1, 100, 1),
    });
    const compaction = storage.saveSnapshotAndCompact({
      meta: { index: 100, term: 1, voters: ["a"] },
      data: randomBytes(1_000_000),
    });
    await storage.save({ entries: entries(101, 101, 1) });
    storage.close();
    await assert.rejects(
      compaction,
      (error: unknown) => error instanceof StorageError && /closed/.test(error.message),
    );
    // What the close interrupted is undone or finished at the next open.
    const restored = await reopenAndLoad(dataDir);
    assert.equal(restored.entries.at(-1)?.index, 101);
    const chunkIds = new Set(
      (await rawKeys(dataDir)).filter((key) => key[0] === "snapshotChunk").map((key) => key[1]),
    );
    assert.ok(chunkIds.size <= 1);
  });
});

Deno.test("compaction deletes a big entry's overflow parts in the same step as its head", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    // 255 one-key segments, then two-key segments (an entry of 66,000 bytes and its
    // overflow part): the first step of 256 keys must stop before segment 256, whose part
    // must not be left for the next step alone.
    for (let index = 1; index <= 255; index++) {
      await storage.save({
        hardState: { term: 1, vote: null, commit: index - 1 },
        entries: [entry(index, 1)],
      });
    }
    await storage.save({ entries: [...entries(256, 260, 1, 66_000), ...entries(261, 270, 1)] });
    await storage.saveSnapshotAndCompact({
      meta: { index: 265, term: 1, voters: ["a"] },
      data: randomBytes(100),
    });
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.entries, entries(266, 270, 1));
    // The segment 261..270 straddles the snapshot: it stays, its entries up to 265 dead.
    const logKeys = (await rawKeys(dataDir)).filter((key) => key[0] === "log");
    assert.deepEqual(logKeys, [["log", 261n]]);
  });
});

Deno.test("a conflicting append inside one segment rewrites it truncated", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 1, vote: null, commit: 3 },
      entries: entries(1, 20, 1),
    });
    await storage.save({
      hardState: { term: 2, vote: null, commit: 5 },
      entries: entries(8, 12, 2),
    });
    const expected = [...entries(1, 7, 1), ...entries(8, 12, 2)];
    assert.deepEqual((await storage.load()).entries, expected);
    // And the log goes on from the new end.
    await storage.save({ entries: entries(13, 14, 2) });
    storage.close();
    assert.deepEqual((await reopenAndLoad(dataDir)).entries, [...expected, ...entries(13, 14, 2)]);
    assert.deepEqual(
      (await rawSegments(dataDir)).map((segment) => [segment.firstIndex, segment.lastIndex]),
      [[1, 7], [8, 12], [13, 14]],
    );
  });
});

Deno.test("a conflicting append across segments replaces whole and partial segments", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    for (let first = 1; first <= 40; first += 10) {
      await storage.save({
        hardState: { term: 1, vote: null, commit: 1 },
        entries: entries(first, first + 9, 1),
      });
    }
    // From 15 (inside 11..20) to 25 (inside 21..30): 11..20 is truncated, 21..30 (whose
    // first index the new entries cover) goes in the same commit, 31..40 is the tail.
    await storage.save({
      hardState: { term: 2, vote: null, commit: 1 },
      entries: entries(15, 25, 2),
    });
    let expected = [...entries(1, 14, 1), ...entries(15, 25, 2)];
    assert.deepEqual((await storage.load()).entries, expected);
    // At a segment's first index (15): it is overwritten, the one after it goes.
    await storage.save({ entries: entries(26, 30, 2) });
    await storage.save({
      hardState: { term: 3, vote: null, commit: 1 },
      entries: entries(15, 16, 3),
    });
    expected = [...entries(1, 14, 1), ...entries(15, 16, 3)];
    storage.close();
    assert.deepEqual((await reopenAndLoad(dataDir)).entries, expected);
    assert.deepEqual(
      (await rawSegments(dataDir)).map((segment) => [segment.firstIndex, segment.lastIndex]),
      [[1, 10], [11, 14], [15, 16]],
    );
  });
});

Deno.test("a conflicting append too big for one commit replaces segments commit by commit", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    for (let first = 1; first <= 3_000; first += 500) {
      await storage.save({
        hardState: { term: 1, vote: null, commit: 1 },
        entries: entries(first, first + 499, 1, 1_000),
      });
    }
    // 1,500 entries of 1,000 bytes (1.5 MB: two commits) from 700 on.
    await storage.save({
      hardState: { term: 2, vote: null, commit: 1 },
      entries: entries(700, 2_199, 2, 1_000),
    });
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.entries, [
      ...entries(1, 699, 1, 1_000),
      ...entries(700, 2_199, 2, 1_000),
    ]);
    await assertOnlyLiveSegments(dataDir, 0, 2_199);
  });
});

Deno.test("a compaction keeps a segment straddling the snapshot; reopen, truncate and compact it", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 1, vote: null, commit: 20 },
      entries: entries(1, 20, 1),
    });
    await storage.save({ entries: entries(21, 30, 1) });
    const first: Snapshot = { meta: { index: 15, term: 1, voters: ["a"] }, data: randomBytes(10) };
    await storage.saveSnapshotAndCompact(first);
    storage.close();
    assert.deepEqual(await reopenAndLoad(dataDir), {
      hardState: { term: 1, vote: null, commit: 20 },
      snapshot: first,
      entries: entries(16, 30, 1),
    });
    assert.deepEqual((await rawKeys(dataDir)).filter((key) => key[0] === "log"), [
      ["log", 1n],
      ["log", 21n],
    ]);
    // A conflict inside the straddling segment, after a reopen: its dead entries stay.
    const reopened = await openStore(dataDir);
    await reopened.save({
      hardState: { term: 2, vote: null, commit: 17 },
      entries: entries(18, 22, 2),
    });
    const expected = [...entries(16, 17, 1), ...entries(18, 22, 2)];
    assert.deepEqual((await reopened.load()).entries, expected);
    // Compaction inside the new segment: the truncated one (1..17) goes.
    const second: Snapshot = { meta: { index: 20, term: 2, voters: ["a"] }, data: randomBytes(10) };
    await reopened.saveSnapshotAndCompact(second);
    reopened.close();
    assert.deepEqual(await reopenAndLoad(dataDir), {
      hardState: { term: 2, vote: null, commit: 17 },
      snapshot: second,
      entries: entries(21, 22, 2),
    });
    assert.deepEqual(
      (await rawSegments(dataDir)).map((segment) => [segment.firstIndex, segment.lastIndex]),
      [[18, 22]],
    );
  });
});

Deno.test("terms are read from the right segment (snapshot installs, compaction checks)", async () => {
  // Segments 1..10 (term 1), 11..20 (term 2), 21..30 (terms 3 and 4), 31 (a big entry,
  // term 4). A snapshot from the leader keeps the log after it only if the log's term at
  // its index matches (Raft figure 13): that needs the right term from the right segment.
  const log = [
    ...entries(1, 10, 1),
    ...entries(11, 20, 2),
    ...entries(21, 25, 3),
    ...entries(26, 30, 4),
    entry(31, 4, 70_000),
  ];
  const saves = [log.slice(0, 10), log.slice(10, 20), log.slice(20, 30), log.slice(30)];
  for (const index of [1, 10, 11, 20, 21, 25, 26, 30, 31]) {
    for (const matching of [true, false]) {
      await withStore(async (dataDir) => {
        const storage = await openStore(dataDir);
        for (const batch of saves) {
          await storage.save({ hardState: { term: 5, vote: null, commit: 0 }, entries: batch });
        }
        const term = log[index - 1]!.term + (matching ? 0 : 1);
        const snapshot: Snapshot = { meta: { index, term, voters: ["a"] }, data: randomBytes(10) };
        await storage.save({
          snapshot,
          hardState: { term: 5, vote: null, commit: index },
          entries: [],
        });
        assert.deepEqual(
          (await storage.load()).entries,
          matching ? log.slice(index) : [],
          `snapshot at ${index}, ${matching ? "matching" : "other"} term`,
        );
        if (matching && index < 31) {
          // A local snapshot with another term than the log's is a programming error.
          await assert.rejects(
            storage.saveSnapshotAndCompact({
              meta: { index: index + 1, term: log[index]!.term + 1, voters: ["a"] },
              data: randomBytes(10),
            }),
            new RegExp(`has term ${log[index]!.term + 1} but the log has term ${log[index]!.term}`),
          );
        }
        storage.close();
        await assertOnlyLiveSegments(dataDir, index, matching ? 31 : index, `at ${index}`);
      });
    }
  }
});

Deno.test("a segment holding dead entries after the last index is rewritten by the next append", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    await storage.save({
      hardState: { term: 1, vote: null, commit: 5 },
      entries: entries(1, 20, 1),
    });
    storage.close();
    // As the log's end moved back by a truncation whose rewrite is not in this format.
    const kv = await Deno.openKv(join(dataDir, kvFileName));
    await kv.set(["hardState"], { term: 1, vote: null, commit: 5, lastIndex: 12 });
    kv.close();
    assert.deepEqual((await reopenAndLoad(dataDir)).entries, entries(1, 12, 1));
    const reopened = await openStore(dataDir);
    await reopened.save({
      hardState: { term: 2, vote: null, commit: 5 },
      entries: entries(13, 14, 2),
    });
    reopened.close();
    assert.deepEqual((await reopenAndLoad(dataDir)).entries, [
      ...entries(1, 12, 1),
      ...entries(13, 14, 2),
    ]);
    await assertOnlyLiveSegments(dataDir, 0, 14);
  });
});

Deno.test("a conflicting segment covering more stored segments than one commit can delete", async () => {
  await withStore(async (dataDir) => {
    const storage = await openStore(dataDir);
    // 1,200 one-entry segments (a follower that saved one entry per Ready), then one new
    // segment replacing 1,101 of them: their deletions go in commits before it.
    for (let index = 1; index <= 1_200; index++) {
      await storage.save({
        hardState: { term: 1, vote: null, commit: Math.min(index, 99) },
        entries: [entry(index, 1)],
      });
    }
    const replacement = entries(100, 1_200, 2);
    await storage.save({ hardState: { term: 2, vote: null, commit: 99 }, entries: replacement });
    assert.deepEqual((await storage.load()).entries, [...entries(1, 99, 1), ...replacement]);
    await storage.save({ entries: entries(1_201, 1_210, 2) });
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.entries, [
      ...entries(1, 99, 1),
      ...replacement,
      ...entries(1_201, 1_210, 2),
    ]);
    await assertOnlyLiveSegments(dataDir, 0, 1_210);
    assert.equal((await rawSegments(dataDir)).length, 99 + 2);
  });
});

/**
 * Runs `body` with every Deno KV commit after the first `commitsAllowed` failing, as if
 * the process died right after the last durable one (each resolved commit is durable).
 */
async function withCommitsCut<T>(commitsAllowed: number, body: () => Promise<T>): Promise<T> {
  const prototype = Deno.AtomicOperation.prototype;
  const original = prototype.commit;
  let left = commitsAllowed;
  prototype.commit = function (this: Deno.AtomicOperation) {
    if (left <= 0) return Promise.reject(new Error("simulated crash before this commit"));
    left--;
    return original.call(this);
  };
  try {
    return await body();
  } finally {
    prototype.commit = original;
  }
}

async function copyDirectory(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const file of Deno.readDir(from)) {
    if (file.isFile) await Deno.copyFile(join(from, file.name), join(to, file.name));
  }
}

Deno.test("a conflicting append cut after any of its commits leaves the old log or a prefix of the new", async () => {
  // Two shapes of split appends: one new segment covering 1,101 one-entry segments (its
  // deletions take commits before it), and 1.5 MB of entries from inside a segment.
  const scenarios = [
    {
      name: "many covered segments",
      build: async (storage: KvLogStorage) => {
        for (let index = 1; index <= 1_200; index++) {
          await storage.save({
            hardState: { term: 1, vote: null, commit: Math.min(index, 99) },
            entries: [entry(index, 1)],
          });
        }
      },
      old: entries(1, 1_200, 1),
      replacement: entries(100, 1_200, 2),
    },
    {
      name: "big replacement from inside a segment",
      build: async (storage: KvLogStorage) => {
        await storage.save({
          hardState: { term: 1, vote: null, commit: 99 },
          entries: entries(1, 2_000, 1, 500),
        });
      },
      old: entries(1, 2_000, 1, 500),
      replacement: entries(100, 1_600, 2, 500),
    },
  ];
  for (const scenario of scenarios) {
    await withStore(async (dataDir) => {
      const base = await openStore(dataDir);
      await scenario.build(base);
      base.close();
      const first = scenario.replacement[0]!.index;
      const hardState: HardState = { term: 2, vote: null, commit: first - 1 };
      for (let commits = 0;; commits++) {
        const copy = `${dataDir}-cut-${commits}`;
        await copyDirectory(dataDir, copy);
        const storage = await KvLogStorage.open({ dataDir: copy, ...ids });
        const completed = await withCommitsCut(
          commits,
          () =>
            storage.save({ hardState, entries: scenario.replacement }).then(
              () => true,
              () => false,
            ),
        );
        storage.close();
        const where = `${scenario.name}, cut after ${commits} commits`;
        const restored = await reopenAndLoad(copy);
        const logEnd = restored.entries.at(-1)?.index ?? 0;
        if (commits === 0) {
          assert.deepEqual(restored.entries, scenario.old, where);
        } else {
          // The entries before `first`, then a prefix of the replacement.
          assert.ok(logEnd >= first - 1, where);
          assert.deepEqual(
            restored.entries,
            [
              ...scenario.old.slice(0, first - 1),
              ...scenario.replacement.slice(0, logEnd - first + 1),
            ],
            where,
          );
        }
        await assertOnlyLiveSegments(copy, 0, logEnd, where);
        await Deno.remove(copy, { recursive: true });
        if (completed) {
          assert.equal(logEnd, scenario.replacement.at(-1)!.index, where);
          assert.ok(commits >= 2, `${where}: the append should take several commits`);
          break;
        }
        assert.ok(commits < 20, `${where}: too many commits`);
      }
    });
  }
});

/** Equality of restored states (cheaper than a failing deepEqual, which renders a diff). */
function sameState(
  a: { snapshot: Snapshot | null; entries: readonly Entry[] },
  b: { snapshot: Snapshot | null; entries: readonly Entry[] },
): boolean {
  const sameBytes = (x: Uint8Array, y: Uint8Array) =>
    x.length === y.length && x.every((byte, i) => byte === y[i]);
  const sameSnapshot = a.snapshot === null || b.snapshot === null
    ? a.snapshot === b.snapshot
    : JSON.stringify(a.snapshot.meta) === JSON.stringify(b.snapshot.meta) &&
      sameBytes(a.snapshot.data, b.snapshot.data);
  return sameSnapshot && a.entries.length === b.entries.length &&
    a.entries.every((entry, i) => {
      const other = b.entries[i]!;
      return entry.index === other.index && entry.term === other.term &&
        entry.kind === other.kind && sameBytes(entry.data, other.data);
    });
}

Deno.test("a snapshot install or compaction cut after any of its commits leaves the old or the new state", async () => {
  // Segments of 7 entries (term 1) up to 42, then 43..60 (term 2) in one segment.
  const log = [...entries(1, 42, 1), ...entries(43, 60, 2)];
  const build = async (storage: KvLogStorage) => {
    for (let first = 1; first <= 42; first += 7) {
      await storage.save({
        hardState: { term: 2, vote: null, commit: first },
        entries: log.slice(first - 1, first + 6),
      });
    }
    await storage.save({ entries: log.slice(42) });
  };
  const snapshot = (index: number, term: number): Snapshot => ({
    meta: { index, term, voters: ["a"] },
    data: new Uint8Array(200_000).fill(index),
  });
  const old = { snapshot: null, entries: log };
  const operations: {
    name: string;
    run: (storage: KvLogStorage) => Promise<void>;
    states: { snapshot: Snapshot | null; entries: Entry[] }[];
  }[] = [
    {
      name: "compaction inside a segment",
      run: (storage) => storage.saveSnapshotAndCompact(snapshot(20, 1)),
      states: [old, { snapshot: snapshot(20, 1), entries: log.slice(20) }],
    },
    {
      name: "install with a matching term",
      run: (storage) =>
        storage.save({
          snapshot: snapshot(30, 1),
          hardState: { term: 2, vote: null, commit: 30 },
          entries: [],
        }),
      states: [old, { snapshot: snapshot(30, 1), entries: log.slice(30) }],
    },
    {
      name: "install with another term, then entries",
      run: (storage) =>
        storage.save({
          snapshot: snapshot(45, 3),
          hardState: { term: 3, vote: null, commit: 45 },
          entries: entries(46, 50, 3),
        }),
      states: [
        old,
        { snapshot: snapshot(45, 3), entries: [] },
        { snapshot: snapshot(45, 3), entries: entries(46, 50, 3) },
      ],
    },
    {
      name: "install beyond the log",
      run: (storage) =>
        storage.save({
          snapshot: snapshot(100, 3),
          hardState: { term: 3, vote: null, commit: 100 },
          entries: [],
        }),
      states: [old, { snapshot: snapshot(100, 3), entries: [] }],
    },
  ];
  await withStore(async (dataDir) => {
    const base = await openStore(dataDir);
    await build(base);
    base.close();
    for (const operation of operations) {
      for (let commits = 0;; commits++) {
        const where = `${operation.name}, cut after ${commits} commits`;
        const copy = `${dataDir}-cut`;
        await copyDirectory(dataDir, copy);
        const storage = await KvLogStorage.open({ dataDir: copy, ...ids });
        const completed = await withCommitsCut(
          commits,
          () => operation.run(storage).then(() => true, () => false),
        );
        storage.close();
        const restored = await reopenAndLoad(copy);
        const state = { snapshot: restored.snapshot, entries: restored.entries };
        assert.ok(
          operation.states.some((allowed) => sameState(state, allowed)),
          `${where}: snapshot ${state.snapshot?.meta.index}, entries ${state.entries[0]?.index}..${
            state.entries.at(-1)?.index
          }`,
        );
        if (completed) assert.ok(sameState(state, operation.states.at(-1)!), where);
        const snapshotIndex = state.snapshot?.meta.index ?? 0;
        await assertOnlyLiveSegments(
          copy,
          snapshotIndex,
          state.entries.at(-1)?.index ?? snapshotIndex,
          where,
        );
        const chunkIds = new Set(
          (await rawKeys(copy)).filter((key) => key[0] === "snapshotChunk").map((key) => key[1]),
        );
        assert.ok(chunkIds.size <= 1, `${where}: chunks of ${chunkIds.size} snapshots remain`);
        await Deno.remove(copy, { recursive: true });
        if (completed) break;
        assert.ok(commits < 30, `${where}: too many commits`);
      }
    }
  });
});
