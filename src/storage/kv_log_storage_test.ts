import assert from "node:assert/strict";
import { join } from "node:path";
import type { Entry, HardState, Snapshot } from "../raft/types.ts";
import { kvFileName, KvLogStorage, StorageError } from "./mod.ts";
import { costOf, fitsInOneCommit, type Mutation } from "./_commits.ts";
import { encodeEntry, hardStateKey, logKey } from "./_codec.ts";

const ids = { clusterId: "cluster-a", nodeId: "127.0.0.1:5000" };

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
  const storage = await KvLogStorage.open({ dataDir, ...ids });
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
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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
    const again = await KvLogStorage.open({ dataDir, ...ids });
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
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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
    const storage = await KvLogStorage.open({ dataDir, ...ids });
    await storage.save({
      hardState: { term: 1, vote: null, commit: 50 },
      entries: entries(1, 2_500, 1),
    });
    // Conflict at 100, 1,300 new entries: the old 100..2500 go, from the end first.
    const replacement = entries(100, 1_399, 2);
    await storage.save({ hardState: { term: 2, vote: null, commit: 1_300 }, entries: replacement });
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.entries, [...entries(1, 99, 1), ...replacement]);
    assert.deepEqual(restored.hardState, { term: 2, vote: null, commit: 1_300 });
  });
});

Deno.test("a normal Ready fits one commit; 1,024 entries do not", () => {
  const hardState: Mutation = {
    type: "set",
    key: hardStateKey,
    value: { term: 1, vote: "127.0.0.1:5000", commit: 1 },
  };
  const units = (count: number, bytes: number) =>
    entries(1, count, 1, bytes).flatMap((e) =>
      encodeEntry(e).map((value): Mutation => ({ type: "set", key: logKey(e.index), value }))
    );
  assert.ok(fitsInOneCommit(costOf([...units(990, 100), hardState])));
  assert.ok(fitsInOneCommit(costOf([...units(10, 64 * 1024 - 100), hardState])));
  assert.ok(!fitsInOneCommit(costOf([...units(1_024, 16), hardState])));
  assert.ok(!fitsInOneCommit(costOf([...units(13, 64 * 1024 - 100), hardState])));
});

Deno.test("the largest batch judged to fit one commit is accepted by Deno KV", async () => {
  // Guards the size estimates against KV's real limits (1000 mutations, 800 KiB, 80 KiB keys).
  await withStore(async (dataDir) => {
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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

Deno.test("compaction deletes entries up to the snapshot and old snapshot chunks", async () => {
  await withStore(async (dataDir) => {
    const storage = await KvLogStorage.open({ dataDir, ...ids });
    await storage.save({
      hardState: { term: 3, vote: null, commit: 90 },
      entries: entries(1, 100, 3),
    });
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
    const logIndexes = keys.filter((key) => key[0] === "log").map((key) => Number(key[1]));
    assert.deepEqual(logIndexes, Array.from({ length: 10 }, (_, i) => 91 + i));
    const chunks = keys.filter((key) => key[0] === "snapshotChunk");
    assert.deepEqual(chunks, [["snapshotChunk", 2n, 0], ["snapshotChunk", 2n, 1]]);
  });
});

Deno.test("a snapshot of more than 5 MB is chunked and replaced", async () => {
  await withStore(async (dataDir) => {
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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
    const reopened = await KvLogStorage.open({ dataDir, ...ids });
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
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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
    const storage = await KvLogStorage.open({ dataDir, ...ids });
    await assert.rejects(
      KvLogStorage.open({ dataDir, ...ids }),
      (error: unknown) =>
        error instanceof StorageError && /holds its lock file/.test(error.message),
    );
    storage.close();
    (await KvLogStorage.open({ dataDir, ...ids })).close();
  });
});

Deno.test("a save that breaks the contract throws and poisons the store", async () => {
  await withStore(async (dataDir) => {
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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
      const storage = await KvLogStorage.open({ dataDir, ...ids });
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
      const lowest = keys.find((key) => key[0] === "log")?.[1];
      assert.equal(lowest, BigInt(installed.meta.index + 1), `after ${savesBefore} saves`);
      const chunkIds = new Set(
        keys.filter((key) => key[0] === "snapshotChunk").map((key) => key[1]),
      );
      assert.equal(chunkIds.size, 1, `after ${savesBefore} saves: ${[...chunkIds]}`);
    });
  }
});

Deno.test("steps of a compaction after close fail with a StorageError", async () => {
  await withStore(async (dataDir) => {
    const storage = await KvLogStorage.open({ dataDir, ...ids });
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

Deno.test("compaction deletes an entry's overflow parts in the same step as its head", async () => {
  await withStore(async (dataDir) => {
    const storage = await KvLogStorage.open({ dataDir, ...ids });
    // 251 one-key entries, then two-key entries: the first step's 256th key is the head
    // of entry 254, whose overflow part must not be left for the next step alone.
    await storage.save({
      hardState: { term: 1, vote: null, commit: 270 },
      entries: [...entries(1, 251, 1), ...entries(252, 260, 1, 66_000), ...entries(261, 270, 1)],
    });
    await storage.saveSnapshotAndCompact({
      meta: { index: 265, term: 1, voters: ["a"] },
      data: randomBytes(100),
    });
    storage.close();
    const restored = await reopenAndLoad(dataDir);
    assert.deepEqual(restored.entries, entries(266, 270, 1));
    const logKeys = (await rawKeys(dataDir)).filter((key) => key[0] === "log");
    assert.deepEqual(logKeys.map((key) => Number(key[1])), [266, 267, 268, 269, 270]);
  });
});
