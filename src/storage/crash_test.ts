/**
 * Crash recovery: a child process writes to a store in a loop and is killed with SIGKILL
 * at a random moment, several times; after each kill the store must open and load a
 * consistent state that holds everything the child was told was saved.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { RestoredState } from "../raft/types.ts";
import { kvFileName, KvLogStorage } from "./mod.ts";
import { segmentFrames } from "./_codec.ts";
import {
  batchSize,
  bigBatchEntries,
  parseBatchEntryData,
  parseIndexedEntryData,
  snapshotData,
} from "./_crash_writer.ts";

const writerPath = new URL("./_crash_writer.ts", import.meta.url).pathname;
const killsPerTest = 6;
const readyTimeoutMs = 20_000;
const exitTimeoutMs = 10_000;

/** Rejects after `ms`, for a hard bound on every wait. */
function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Runs the writer in `mode` until it is ready (or, with `afterProgress`, until it reports
 * its first save), lets it write for `writeMs` more, kills it with
 * SIGKILL, and returns every line it printed.
 */
async function runAndKill(
  mode: "batches" | "snapshots" | "interleaved",
  dataDir: string,
  writeMs: number,
  afterProgress: boolean,
): Promise<string[]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", writerPath, mode, dataDir],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let signalReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => signalReady = resolve);
  const reading = (async () => {
    let pending = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const parts = pending.split("\n");
      pending = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        if (
          afterProgress
            ? line.startsWith("saved ") || line.startsWith("snapshot ")
            : line === "ready"
        ) {
          signalReady();
        }
      }
    }
  })();
  const stderr = new Response(child.stderr).text();
  let killed = false;
  try {
    await deadline(
      Promise.race([ready, child.status]),
      readyTimeoutMs,
      afterProgress ? "the writer's first save" : "the writer to open its store",
    );
    await new Promise((resolve) => setTimeout(resolve, writeMs));
    child.kill("SIGKILL");
    killed = true;
    const status = await deadline(child.status, exitTimeoutMs, "the killed writer to exit");
    await deadline(reading, exitTimeoutMs, "the writer's output");
    assert.equal(status.signal, "SIGKILL", `the writer exited by itself: ${await stderr}`);
    return lines;
  } finally {
    if (!killed) {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
    }
    await child.status;
    await stderr;
  }
}

async function loadStore(dataDir: string): Promise<RestoredState> {
  const storage = await KvLogStorage.open({ dataDir, clusterId: "crash", nodeId: "n1" });
  try {
    return await storage.load();
  } finally {
    storage.close();
  }
}

/**
 * The last entry index of the store's first log segment (from its framing), or null when
 * there is none. Open deletes every segment whose entries are all covered by the snapshot,
 * so this must be after the snapshot's index.
 */
async function firstSegmentEnd(dataDir: string): Promise<number | null> {
  const kv = await Deno.openKv(join(dataDir, kvFileName));
  try {
    for await (const { key, value } of kv.list({ prefix: ["log"] }, { limit: 1 })) {
      const frames = segmentFrames(Number(key[1]), value);
      assert.ok(typeof frames !== "string", `the first segment is damaged: ${frames}`);
      return Number(key[1]) + frames.offsets.length - 1;
    }
    return null;
  } finally {
    kv.close();
  }
}

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

/**
 * Checks that the log is a sequence of batches in increasing batch order, each whole or
 * cut where the batch after it says it replaced it (only the last one may be cut short
 * otherwise, and only if it is bigger than one commit), and that the last batch the
 * writer reported saved is there, unless the batch in flight replaced it.
 * @returns the number of entries.
 */
function checkBatches(restored: RestoredState, lines: readonly string[]): number {
  const runs: {
    batch: number;
    size: number;
    count: number;
    lastIndex: number;
    keptOfPrevious: number;
  }[] = [];
  for (const entry of restored.entries) {
    const { batch, position, size, keptOfPrevious } = parseBatchEntryData(entry.data);
    const run = runs.at(-1);
    if (run !== undefined && run.batch === batch) {
      assert.equal(position, run.count, `entry ${entry.index}: batch ${batch} out of order`);
      run.count++;
      run.lastIndex = entry.index;
    } else {
      assert.ok(
        run === undefined || batch > run.batch,
        `entry ${entry.index}: batch ${batch} after ${run?.batch}`,
      );
      assert.equal(
        position,
        0,
        `entry ${entry.index}: batch ${batch} starts at position ${position}`,
      );
      assert.equal(size, batchSize(batch), `entry ${entry.index}: batch ${batch} has a wrong size`);
      runs.push({ batch, size, count: 1, lastIndex: entry.index, keptOfPrevious });
    }
  }
  for (const [i, run] of runs.entries()) {
    const next = runs[i + 1];
    if (next === undefined) {
      if (run.count !== run.size) {
        assert.equal(
          run.size,
          bigBatchEntries,
          `batch ${run.batch} is partial: ${run.count}/${run.size}`,
        );
      }
    } else if (next.batch === run.batch + 1) {
      // A batch keeps what the next one kept of it (the first run may have lost its
      // start to a compaction).
      const expected =
        `batch ${next.batch} kept ${next.keptOfPrevious} entries of batch ${run.batch}, which has ${run.count}`;
      if (i === 0) assert.ok(run.count <= next.keptOfPrevious, expected);
      else assert.equal(run.count, next.keptOfPrevious, expected);
    } else {
      // The batches between them were replaced whole: by the next one, which says so (the
      // batch before it may itself have replaced one whole, or have been cut short by a
      // kill and then replaced whole by the next one after the restart).
      assert.equal(
        next.keptOfPrevious,
        0,
        `batches ${run.batch + 1} to ${next.batch - 1} are missing`,
      );
    }
  }
  const lastIndex = restored.entries.at(-1)?.index ?? restored.snapshot?.meta.index ?? 0;
  assert.ok(restored.hardState.commit <= lastIndex);
  assert.ok((restored.entries.at(-1)?.term ?? 0) <= restored.hardState.term);
  const saved = lines.filter((line) => line.startsWith("saved ")).at(-1);
  if (saved !== undefined) {
    const [, batchText, lastText] = saved.split(" ");
    const savedBatch = Number(batchText);
    const last = runs.at(-1);
    assert.ok(last !== undefined, "the log is empty after a save was acknowledged");
    if (last.batch === savedBatch + 1) return restored.entries.length; // the batch in flight
    assert.equal(
      last.batch,
      savedBatch,
      `acknowledged batch ${savedBatch} is lost (log ends with ${last.batch})`,
    );
    assert.equal(last.lastIndex, Number(lastText), "the acknowledged batch lost entries");
  }
  return restored.entries.length;
}

Deno.test("kill -9 during saves of batches: the log is whole or replaced batches and keeps every acknowledged one", async () => {
  const root = await Deno.makeTempDir({ prefix: "dlock_crash_" });
  try {
    const dataDir = join(root, "data");
    let acknowledged = 0;
    for (let kill = 0; kill < killsPerTest; kill++) {
      const lines = await runAndKill("batches", dataDir, Math.random() * 300, kill % 2 === 1);
      acknowledged += lines.filter((line) => line.startsWith("saved ")).length;
      const restored = await loadStore(dataDir);
      checkBatches(restored, lines);
    }
    assert.ok(acknowledged > killsPerTest, `the writer saved only ${acknowledged} batches in all`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

function assertSnapshotData(index: number, data: Uint8Array): void {
  const expected = snapshotData(index);
  assert.equal(data.length, expected.length, `snapshot ${index} has ${data.length} bytes`);
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== expected[i]) assert.fail(`snapshot ${index} differs at byte ${i}`);
  }
}

Deno.test("kill -9 while big snapshots are switched: the old or the new snapshot, never a mix", async () => {
  const root = await Deno.makeTempDir({ prefix: "dlock_crash_" });
  try {
    const dataDir = join(root, "data");
    let acknowledged = 0;
    for (let kill = 0; kill < killsPerTest; kill++) {
      const lines = await runAndKill("snapshots", dataDir, Math.random() * 300, kill % 2 === 1);
      const snapshots = lines.filter((line) => line.startsWith("snapshot ")).map((line) =>
        Number(line.split(" ")[1])
      );
      acknowledged += snapshots.length;
      const restored = await loadStore(dataDir);
      const lastAcknowledged = snapshots.at(-1);
      if (lastAcknowledged !== undefined) {
        assert.ok(
          restored.snapshot !== null,
          `snapshot ${lastAcknowledged} was acknowledged but none is stored`,
        );
        assert.ok(
          restored.snapshot.meta.index >= lastAcknowledged,
          "an acknowledged snapshot was lost",
        );
      }
      if (restored.snapshot !== null) {
        assertSnapshotData(restored.snapshot.meta.index, restored.snapshot.data);
        const first = restored.entries[0];
        assert.ok(first === undefined || first.index === restored.snapshot.meta.index + 1);
        // The open finished what the kill interrupted: only the current snapshot's chunks remain.
        const keys = await rawKeys(dataDir);
        const chunkIds = new Set(
          keys.filter((key) => key[0] === "snapshotChunk").map((key) => key[1]),
        );
        assert.equal(chunkIds.size, 1, `chunks of ${chunkIds.size} snapshots remain`);
        const firstEnd = await firstSegmentEnd(dataDir);
        assert.ok(firstEnd === null || firstEnd > restored.snapshot.meta.index);
      }
    }
    assert.ok(acknowledged > 0, "the writer never finished a snapshot");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** The last number printed on a line starting with `prefix`, or 0. */
function lastReported(lines: readonly string[], prefix: string): number {
  return Number(lines.filter((line) => line.startsWith(prefix)).at(-1)?.split(" ")[1] ?? 0);
}

Deno.test("kill -9 while saves go between the steps of compactions and installs race them", async () => {
  const root = await Deno.makeTempDir({ prefix: "dlock_crash_" });
  try {
    const dataDir = join(root, "data");
    let compactions = 0;
    for (let kill = 0; kill < killsPerTest; kill++) {
      const lines = await runAndKill("interleaved", dataDir, 100 + Math.random() * 400, true);
      compactions += lines.filter((line) => line.startsWith("compacted ")).length;
      const restored = await loadStore(dataDir);
      const snapshotIndex = restored.snapshot?.meta.index ?? 0;
      const lastIndex = restored.entries.at(-1)?.index ?? snapshotIndex;
      const saved = lastReported(lines, "saved ");
      assert.ok(lastIndex >= saved, `saved up to ${saved} but the log ends at ${lastIndex}`);
      const acknowledgedSnapshot = Math.max(
        lastReported(lines, "compacted "),
        lastReported(lines, "installed "),
      );
      assert.ok(
        snapshotIndex >= acknowledgedSnapshot,
        `snapshot ${acknowledgedSnapshot} was acknowledged but the store has ${snapshotIndex}`,
      );
      for (const entry of restored.entries) {
        assert.equal(parseIndexedEntryData(entry.data), entry.index, "an entry is misplaced");
      }
      if (restored.snapshot !== null) {
        assertSnapshotData(snapshotIndex, restored.snapshot.data);
        assert.ok(
          restored.entries.length === 0 || restored.entries[0]!.index === snapshotIndex + 1,
        );
      }
      const keys = await rawKeys(dataDir);
      const chunkIds = new Set(
        keys.filter((key) => key[0] === "snapshotChunk").map((key) => key[1]),
      );
      assert.ok(chunkIds.size <= 1, `chunks of ${chunkIds.size} snapshots remain`);
      const firstEnd = await firstSegmentEnd(dataDir);
      assert.ok(firstEnd === null || firstEnd > snapshotIndex, "a dead segment remains");
    }
    assert.ok(compactions > 0, "the writer never finished a compaction");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
