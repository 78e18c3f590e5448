import assert from "node:assert/strict";
import { join } from "node:path";
import type { Entry } from "../raft/types.ts";
import { KvLogStorage, StorageError, type StorageUpdate } from "./mod.ts";
import { floorFileName } from "./_floor.ts";

const ids = { clusterId: "cluster-a", nodeId: "127.0.0.1:5000" };

function entries(from: number, to: number, term: number): Entry[] {
  const list: Entry[] = [];
  for (let index = from; index <= to; index++) {
    list.push({ index, term, kind: "normal", data: new Uint8Array(100).fill(index & 0xff) });
  }
  return list;
}

/** Copies the store's files (not the lock file) of `from` into `to`, replacing them. */
async function copyStoreFiles(from: string, to: string, withFloor: boolean): Promise<void> {
  for await (const item of Deno.readDir(to)) {
    if (item.name.startsWith("raft.kv") || (withFloor && item.name === floorFileName)) {
      await Deno.remove(join(to, item.name));
    }
  }
  for await (const item of Deno.readDir(from)) {
    if (item.name.startsWith("raft.kv") || (withFloor && item.name === floorFileName)) {
      await Deno.copyFile(join(from, item.name), join(to, item.name));
    }
  }
}

async function withRoot(body: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "dlock_floor_" });
  try {
    await body(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/**
 * A store that saved `first` and was closed (a copy of its files is kept aside as `older`),
 * then saved `then` and was closed again. By default: term 2 with entries 1..10 committed,
 * then term 5 with entries up to 40 committed.
 */
async function storeThatMovedOn(
  root: string,
  first: StorageUpdate = {
    hardState: { term: 2, vote: "n2", commit: 10 },
    entries: entries(1, 10, 2),
  },
  then: StorageUpdate = {
    hardState: { term: 5, vote: "n3", commit: 40 },
    entries: entries(11, 40, 5),
  },
): Promise<{ dataDir: string; older: string }> {
  const dataDir = join(root, "data");
  const older = join(root, "older");
  for (const [index, update] of [first, then].entries()) {
    const storage = await KvLogStorage.open({ dataDir, ...ids });
    await storage.save(update);
    storage.close();
    if (index === 0) {
      await Deno.mkdir(older);
      await copyStoreFiles(dataDir, older, true);
    }
  }
  return { dataDir, older };
}

async function assertRefusedAsBehind(dataDir: string, expected: RegExp): Promise<void> {
  const before = await Deno.readFile(join(dataDir, "raft.kv"));
  await assert.rejects(KvLogStorage.open({ dataDir, ...ids }), (error: unknown) => {
    assert.ok(error instanceof StorageError, `not a StorageError: ${String(error)}`);
    assert.match(error.message, /is behind what this server had saved/);
    assert.match(error.message, expected);
    return true;
  });
  assert.deepEqual(
    await Deno.readFile(join(dataDir, "raft.kv")),
    before,
    "a refused store is not changed",
  );
}

Deno.test("floor: a store that went back in time (older files, newer floor) is refused", async () => {
  await withRoot(async (root) => {
    const { dataDir, older } = await storeThatMovedOn(root);
    await copyStoreFiles(older, dataDir, false);
    await assertRefusedAsBehind(dataDir, /its term is 2, but it had reached term 5/);
  });
});

Deno.test("floor: a lost vote in the floor's term is refused", async () => {
  await withRoot(async (root) => {
    const { dataDir, older } = await storeThatMovedOn(
      root,
      { hardState: { term: 3, vote: null, commit: 0 }, entries: [] },
      { hardState: { term: 3, vote: "n2", commit: 0 }, entries: [] },
    );
    await copyStoreFiles(older, dataDir, false);
    await assertRefusedAsBehind(
      dataDir,
      /in term 3 it voted for n2, but the store records no vote/,
    );
  });
});

Deno.test("floor: a log shorter than the floor's commit index is refused", async () => {
  await withRoot(async (root) => {
    const { dataDir, older } = await storeThatMovedOn(
      root,
      { hardState: { term: 4, vote: "n1", commit: 5 }, entries: entries(1, 5, 4) },
      { hardState: { term: 4, vote: "n1", commit: 30 }, entries: entries(6, 30, 4) },
    );
    await copyStoreFiles(older, dataDir, false);
    await assertRefusedAsBehind(dataDir, /its log ends at index 5, but entries up to 30/);
  });
});

Deno.test("floor: a deleted store beside its floor is refused, not recreated", async () => {
  await withRoot(async (root) => {
    const { dataDir } = await storeThatMovedOn(root);
    for await (const item of Deno.readDir(dataDir)) {
      if (item.name.startsWith("raft.kv")) await Deno.remove(join(dataDir, item.name));
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(
        KvLogStorage.open({ dataDir, ...ids }),
        /the store is empty, but it had reached term 5 and commit index 40/,
      );
    }
  });
});

Deno.test("floor: a sound store opens after saves, restarts and a compaction", async () => {
  await withRoot(async (root) => {
    const { dataDir } = await storeThatMovedOn(root);
    const storage = await KvLogStorage.open({ dataDir, ...ids });
    const restored = await storage.load();
    assert.equal(restored.hardState.term, 5);
    await storage.saveSnapshotAndCompact({
      meta: { index: 40, term: 5, voters: ["n1", "n2", "n3"] },
      data: new Uint8Array(1000).fill(3),
    });
    storage.close();
    const floor = JSON.parse(await Deno.readTextFile(join(dataDir, floorFileName)));
    assert.deepEqual(floor, { ...ids, term: 5, vote: "n3", commit: 40 });
    const reopened = await KvLogStorage.open({ dataDir, ...ids });
    assert.equal((await reopened.load()).snapshot?.meta.index, 40);
    reopened.close();
  });
});

Deno.test("floor: an unreadable floor counts as none; another server's floor is refused", async () => {
  await withRoot(async (root) => {
    const { dataDir } = await storeThatMovedOn(root);
    await Deno.writeTextFile(join(dataDir, floorFileName), "");
    const storage = await KvLogStorage.open({ dataDir, ...ids });
    storage.close();
    await Deno.writeTextFile(
      join(dataDir, floorFileName),
      JSON.stringify({ ...ids, nodeId: "127.0.0.1:5001", term: 1, vote: null, commit: 0 }),
    );
    await assert.rejects(
      KvLogStorage.open({ dataDir, ...ids }),
      /belongs to server 127\.0\.0\.1:5001 of cluster cluster-a/,
    );
  });
});

Deno.test("integrity: a damaged page in the SQLite file is refused with a message, unchanged", async () => {
  await withRoot(async (root) => {
    const dataDir = join(root, "data");
    const storage = await KvLogStorage.open({ dataDir, ...ids });
    for (let from = 1; from <= 400; from += 40) {
      await storage.save({
        hardState: { term: 2, vote: "n2", commit: from - 1 },
        entries: entries(from, from + 39, 2),
      });
    }
    storage.close();
    // Deno KV checkpoints the WAL into raft.kv when its last connection closes.
    const kvPath = join(dataDir, "raft.kv");
    const file = await Deno.open(kvPath, { read: true, write: true });
    const size = (await file.stat()).size;
    assert.ok(size >= 3 * 4096, `the store should span pages: ${size} bytes`);
    await file.seek(20_000, Deno.SeekMode.Start);
    await file.write(new Uint8Array(2000).map((_, i) => (i * 131 + 7) & 0xff));
    file.close();
    const before = await Deno.readFile(kvPath);
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(KvLogStorage.open({ dataDir, ...ids }), (error: unknown) => {
        assert.ok(error instanceof StorageError, `not a StorageError: ${String(error)}`);
        assert.match(
          error.message,
          /as (its SQLite database is damaged: received .+quick_check|SQLite cannot read it: .*malformed)/,
        );
        return true;
      });
    }
    assert.deepEqual(await Deno.readFile(kvPath), before, "a refused store is not changed");
  });
});
