import assert from "node:assert/strict";
import { join } from "node:path";
import type { Entry } from "../raft/types.ts";
import { kvFileName, KvLogStorage, StorageError } from "./mod.ts";
import { encodeSegments, logKey } from "./_codec.ts";

const ids = { clusterId: "cluster-a", nodeId: "127.0.0.1:5000" };

function entries(from: number, to: number, term: number): Entry[] {
  const list: Entry[] = [];
  for (let index = from; index <= to; index++) {
    list.push({ index, term, kind: "normal", data: new Uint8Array(200).fill(index & 0xff) });
  }
  return list;
}

/**
 * A closed store with a snapshot at 10 (term 1) and entries 11..20 (term 2) in the
 * segments 11..13, 14..16 and 17..20 (entries of 217 bytes: 17 of header, 200 of data).
 */
async function populatedStore(): Promise<{ root: string; dataDir: string }> {
  const root = await Deno.makeTempDir({ prefix: "dlock_refusal_" });
  const dataDir = join(root, "data");
  const storage = await KvLogStorage.open({ dataDir, ...ids });
  await storage.save({
    hardState: { term: 2, vote: "n2", commit: 10 },
    entries: entries(1, 10, 1),
  });
  await storage.save({ entries: entries(11, 13, 2) });
  await storage.save({ entries: entries(14, 16, 2) });
  await storage.save({
    hardState: { term: 2, vote: "n2", commit: 15 },
    entries: entries(17, 20, 2),
  });
  await storage.saveSnapshotAndCompact({
    meta: { index: 10, term: 1, voters: ["n1", "n2"] },
    data: new Uint8Array(150_000).fill(7),
  });
  storage.close();
  return { root, dataDir };
}

async function rawKv<T>(dataDir: string, body: (kv: Deno.Kv) => Promise<T>): Promise<T> {
  const kv = await Deno.openKv(join(dataDir, kvFileName));
  try {
    return await body(kv);
  } finally {
    kv.close();
  }
}

async function keyCount(dataDir: string): Promise<number> {
  return await rawKv(dataDir, async (kv) => {
    let count = 0;
    for await (const _ of kv.list({ prefix: [] })) count++;
    return count;
  });
}

/** Damages a populated store with `damage`, then expects open to refuse it with `expected`. */
async function assertRefused(
  damage: (kv: Deno.Kv) => Promise<unknown>,
  expected: RegExp,
  openAs: { clusterId: string; nodeId: string } = ids,
): Promise<void> {
  const { root, dataDir } = await populatedStore();
  try {
    await rawKv(dataDir, damage);
    const keysBefore = await keyCount(dataDir);
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(KvLogStorage.open({ dataDir, ...openAs }), (error: unknown) => {
        assert.ok(error instanceof StorageError, `not a StorageError: ${String(error)}`);
        assert.match(error.message, expected);
        assert.ok(error.message.includes(join(dataDir, kvFileName)), error.message);
        return true;
      });
    }
    assert.equal(await keyCount(dataDir), keysBefore, "a refused store must not be changed");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const nothing = () => Promise.resolve();

Deno.test("a store of another cluster is refused", async () => {
  await assertRefused(
    nothing,
    /belongs to cluster "cluster-a", not to cluster "cluster-b"/,
    { clusterId: "cluster-b", nodeId: ids.nodeId },
  );
});

Deno.test("a store of another server is refused", async () => {
  await assertRefused(
    nothing,
    /belongs to server "127\.0\.0\.1:5000", not to server "127\.0\.0\.1:5001"/,
    { clusterId: ids.clusterId, nodeId: "127.0.0.1:5001" },
  );
});

Deno.test("a store of a future format version is refused", async () => {
  await assertRefused(
    (kv) => kv.set(["format"], { ...ids, formatVersion: 3 }),
    /storage format version 3 and this build reads only version 2/,
  );
});

Deno.test("a store of format version 1 (one key per entry) is refused, not reset", async () => {
  await assertRefused(
    async (kv) => {
      // What version 1 wrote: the stamp, the hard state and one key per entry.
      for await (const { key } of kv.list({ prefix: [] })) await kv.delete(key);
      const stamp = { ...ids, formatVersion: 1 };
      let operation = kv.atomic().set(["format"], stamp)
        .set(["hardState"], { term: 1, vote: null, commit: 3, lastIndex: 3 });
      for (const entry of entries(1, 3, 1)) {
        operation = operation.set(logKey(entry.index), encodeSegments([entry])[0]!.values[0]!);
      }
      await operation.commit();
    },
    /written in storage format version 1 and this build reads only version 2; there is no in-place upgrade/,
  );
});

Deno.test("a store without a format stamp is refused", async () => {
  await assertRefused((kv) => kv.delete(["format"]), /holds data but no format stamp/);
});

Deno.test("a log that ends before its recorded last index is refused", async () => {
  await assertRefused(
    (kv) => kv.delete(logKey(17)),
    /log ends at index 16 but its hard state says it ends at 20: entries 17 to 20 are missing/,
  );
  await assertRefused(
    (kv) => kv.set(["hardState"], { term: 2, vote: null, commit: 5, lastIndex: 8 }),
    /hard state says the log ends at index 8, before the snapshot's index 10/,
  );
});

Deno.test("a log with a hole is refused", async () => {
  await assertRefused(
    (kv) => kv.delete(logKey(14)),
    /log has a hole: entries 14 to 16 are missing/,
  );
});

Deno.test("entries referring to a missing snapshot are refused", async () => {
  await assertRefused(
    (kv) => kv.delete(["snapshot"]),
    /log starts at index 11 but there is no snapshot covering indexes 1 to 10/,
  );
});

Deno.test("a hard state commit beyond the last index is refused", async () => {
  await assertRefused(
    (kv) => kv.set(["hardState"], { term: 2, vote: null, commit: 999, lastIndex: 20 }),
    /hard state commit 999 is beyond the last log index 20/,
  );
});

Deno.test("a log term beyond the hard state term is refused", async () => {
  await assertRefused(
    (kv) => kv.set(["hardState"], { term: 1, vote: null, commit: 15, lastIndex: 20 }),
    /log holds term 2 at index 20, beyond the hard state term 1/,
  );
});

Deno.test("a hard state of the wrong shape is refused", async () => {
  await assertRefused(
    (kv) => kv.set(["hardState"], "term 2"),
    /hard state is a string, not an object/,
  );
  await assertRefused(
    (kv) => kv.set(["hardState"], { term: 2, vote: 5, commit: 1, lastIndex: 20 }),
    /vote is a number/,
  );
  await assertRefused(
    (kv) => kv.delete(["hardState"]),
    /hard state \(key \["hardState"\]\) is missing/,
  );
});

Deno.test("a damaged log entry is refused", async () => {
  await assertRefused(async (kv) => {
    const { value } = await kv.get<Uint8Array>(logKey(14));
    assert.ok(value instanceof Uint8Array && value.length === 3 * 217);
    value[217 + 100] = value[217 + 100]! ^ 0xff;
    await kv.set(logKey(14), value);
  }, /log segment \["log", 14n\] is damaged: its entry 15: its checksum does not match/);
  await assertRefused(async (kv) => {
    const { value } = await kv.get<Uint8Array>(logKey(11));
    assert.ok(value instanceof Uint8Array);
    value[0] = 9;
    await kv.set(logKey(11), value);
  }, /log segment \["log", 11n\] is damaged: its entry 11: it has the unknown kind code 9/);
  await assertRefused(
    (kv) => kv.set(logKey(14), { term: 2 }),
    /log segment \["log", 14n\] is damaged: its value is a object, not bytes/,
  );
  await assertRefused(
    (kv) => kv.set(["log", 14], new Uint8Array(20)),
    /log key \["log", 14\] has no index/,
  );
});

Deno.test("a log segment whose entry lengths do not add up to its size is refused", async () => {
  const resized = (change: (value: Uint8Array) => Uint8Array) => async (kv: Deno.Kv) => {
    const { value } = await kv.get<Uint8Array>(logKey(14));
    assert.ok(value instanceof Uint8Array);
    await kv.set(logKey(14), change(value));
  };
  await assertRefused(
    resized((value) => value.slice(0, value.length - 5)),
    /segment \["log", 14n\] is damaged: its entry 16 declares 200 data bytes but only 195 follow: the entry lengths do not add up to the value's 646 bytes/,
  );
  await assertRefused(
    resized((value) => new Uint8Array([...value, 1, 2, 3])),
    /segment \["log", 14n\] is damaged: its last 3 bytes \(after entry 16\) are fewer than an entry header/,
  );
  // Entry 15's length field says 150: entry 16's header is then read inside entry 15's data.
  await assertRefused(
    resized((value) => {
      const copy = value.slice();
      new DataView(copy.buffer).setUint32(217 + 9, 150);
      return copy;
    }),
    /segment \["log", 14n\] is damaged: its entry 16 declares 252645135 data bytes but only 250 follow: the entry lengths do not add up to the value's 651 bytes/,
  );
  await assertRefused(
    (kv) => kv.set(logKey(14), new Uint8Array(0)),
    /segment \["log", 14n\] is damaged: its value is empty/,
  );
  await assertRefused(
    (kv) => kv.set(["log", 14n, 1], new Uint8Array(10)),
    /segment \["log", 14n\] is damaged: it packs 3 entries but 1 overflow parts are stored with it/,
  );
});

Deno.test("overlapping log segments are refused", async () => {
  await assertRefused(
    (kv) => kv.set(logKey(12), encodeSegments(entries(12, 12, 2))[0]!.values[0]!),
    /segment \["log", 12n\] holds entries 12 to 12, overlapping the segment before it, which ends at entry 13/,
  );
});

Deno.test("a damaged snapshot is refused", async () => {
  await assertRefused(
    (kv) => kv.delete(["snapshotChunk", 1n, 1]),
    /should have 3 chunks but 2 are stored/,
  );
  await assertRefused(
    (kv) => kv.set(["snapshotChunk", 1n, 2], new Uint8Array(150_000 - 2 * 65_536).fill(8)),
    /checksum of snapshot 1 \(index 10\) does not match/,
  );
  await assertRefused(async (kv) => {
    const { value } = await kv.get<Record<string, unknown>>(["snapshot"]);
    await kv.set(["snapshot"], { ...value, voters: "n1" });
  }, /snapshot voters are not a list/);
});

Deno.test("a key that does not belong to a Raft store is refused", async () => {
  await assertRefused(
    (kv) => kv.set(["sessions", "s1"], 1),
    /holds the key \["sessions", "s1"\], which is not part/,
  );
});

Deno.test("a KV file of garbage bytes is refused", async () => {
  const root = await Deno.makeTempDir({ prefix: "dlock_refusal_" });
  try {
    const dataDir = join(root, "data");
    await Deno.mkdir(dataDir);
    const garbage = new Uint8Array(16_384);
    crypto.getRandomValues(garbage);
    await Deno.writeFile(join(dataDir, kvFileName), garbage);
    await assert.rejects(
      KvLogStorage.open({ dataDir, ...ids }),
      (error: unknown) =>
        error instanceof StorageError &&
        error.message.includes(
          `Cannot open the Raft store at ${join(dataDir, kvFileName)} as SQLite cannot read it`,
        ) &&
        /file is not a database/.test(error.message),
    );
    assert.deepEqual(
      await Deno.readFile(join(dataDir, kvFileName)),
      garbage,
      "the file must be left as it was",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a KV file damaged in its pages is refused", async () => {
  const { root, dataDir } = await populatedStore();
  try {
    const path = join(dataDir, kvFileName);
    const file = await Deno.readFile(path);
    assert.ok(file.length >= 8 * 4096, `store file has ${file.length} bytes`);
    // Keep the header page, scramble every other page.
    file.fill(0x5a, 4096);
    await Deno.writeFile(path, file);
    await assert.rejects(
      KvLogStorage.open({ dataDir, ...ids }),
      (error: unknown) =>
        error instanceof StorageError && /Cannot open the Raft store at .* as/.test(error.message),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
