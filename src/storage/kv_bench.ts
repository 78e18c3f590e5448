/**
 * Throughput of the Raft store on this machine's disk: how many durable commits per
 * second Deno KV gives, for single small saves and for batches (the server group-commits
 * one save per Ready, so this bounds its throughput).
 *
 * Each line gives the wall time per operation and, on Linux, the process CPU time per
 * operation (user + system time of every thread, Deno KV's SQLite thread included, from
 * `/proc/self/stat`).
 *
 * Run: `deno run -A --unstable-kv src/storage/kv_bench.ts [--dir <parent dir>] [--quick]`
 * (`--during-snapshot`: only the longest save latency while a snapshot persists)
 * (`--fsync`: only the latency of one durable small write three ways: a `kv.set`, a raw
 * `write` + `fdatasync` appending to a file, and the same into a preallocated file; start
 * several at once to see the disk shared, as the three servers of a local cluster share it)
 * (the store goes in a temp dir under `--dir`, default the system temp dir; use the disk
 * the data directory will live on).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import type { Entry } from "../raft/types.ts";
import { KvLogStorage } from "./mod.ts";

interface Result {
  readonly name: string;
  readonly operations: number;
  readonly seconds: number;
  readonly entries: number;
  /** Process CPU time (user + system, all threads), or null where it cannot be read. */
  readonly cpuSeconds: number | null;
}

/**
 * User + system CPU time of this process so far, in seconds (Linux: `/proc/self/stat`,
 * in clock ticks of 10 ms), or null elsewhere.
 */
function processCpuSeconds(): number | null {
  try {
    const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]?.split(" ");
    // After "pid (comm) ": state is field 0, utime field 11, stime field 12.
    const ticks = Number(fields?.[11]) + Number(fields?.[12]);
    return Number.isFinite(ticks) ? ticks / 100 : null;
  } catch {
    return null;
  }
}

function entriesFrom(first: number, count: number, bytes: number): Entry[] {
  const list: Entry[] = [];
  for (let i = 0; i < count; i++) {
    list.push({
      index: first + i,
      term: 1,
      kind: "normal",
      data: new Uint8Array(bytes).fill(i & 0xff),
    });
  }
  return list;
}

async function timed(
  name: string,
  operations: number,
  entries: number,
  body: () => Promise<void>,
): Promise<Result> {
  const cpuStart = processCpuSeconds();
  const start = performance.now();
  await body();
  const seconds = (performance.now() - start) / 1000;
  const cpuEnd = processCpuSeconds();
  const cpuSeconds = cpuStart === null || cpuEnd === null ? null : cpuEnd - cpuStart;
  return { name, operations, seconds, entries, cpuSeconds };
}

async function benchRawKv(dir: string, count: number, concurrency: number): Promise<Result> {
  const kv = await Deno.openKv(join(dir, `raw-${concurrency}.kv`));
  try {
    const perWorker = Math.ceil(count / concurrency);
    return await timed(
      `raw kv.set of 100 B, ${concurrency} concurrent`,
      perWorker * concurrency,
      0,
      async () => {
        await Promise.all(Array.from({ length: concurrency }, async (_, worker) => {
          for (let i = 0; i < perWorker; i++) await kv.set(["k", worker, i], new Uint8Array(100));
        }));
      },
    );
  } finally {
    kv.close();
  }
}

async function benchSaves(
  dir: string,
  name: string,
  saves: number,
  batch: number,
  bytes: number,
): Promise<Result> {
  const storage = await KvLogStorage.open({
    dataDir: join(dir, name),
    clusterId: "bench",
    nodeId: "n1",
  });
  try {
    let next = 1;
    return await timed(
      `save: ${batch} × ${bytes} B entries + hard state`,
      saves,
      saves * batch,
      async () => {
        for (let i = 0; i < saves; i++) {
          const entries = entriesFrom(next, batch, bytes);
          next += batch;
          await storage.save({
            hardState: { term: 1, vote: "n1", commit: next - 1 - batch },
            entries,
          });
        }
      },
    );
  } finally {
    storage.close();
  }
}

async function benchSnapshot(
  dir: string,
  megabytes: number,
  logEntries: number,
  entriesPerSave: number,
): Promise<Result[]> {
  const dataDir = join(dir, `snapshot-${entriesPerSave}`);
  const storage = await KvLogStorage.open({ dataDir, clusterId: "bench", nodeId: "n1" });
  const data = new Uint8Array(megabytes * 1024 * 1024);
  for (let i = 0; i < data.length; i += 997) data[i] = i & 0xff;
  const results: Result[] = [];
  try {
    for (let first = 1; first <= logEntries; first += entriesPerSave) {
      await storage.save({
        hardState: { term: 1, vote: null, commit: first - 1 },
        entries: entriesFrom(first, entriesPerSave, 100),
      });
    }
    results.push(
      await timed(
        `saveSnapshotAndCompact: ${megabytes} MiB, ${
          logEntries / 2
        } entries (${entriesPerSave}/save)`,
        1,
        0,
        () =>
          storage.saveSnapshotAndCompact({
            meta: { index: logEntries / 2, term: 1, voters: ["n1"] },
            data,
          }),
      ),
    );
  } finally {
    storage.close();
  }
  results.push(
    await timed(
      `open + load: ${megabytes} MiB snapshot + ${logEntries / 2} entries`,
      1,
      logEntries / 2,
      async () => {
        const reopened = await KvLogStorage.open({ dataDir, clusterId: "bench", nodeId: "n1" });
        await reopened.load();
        reopened.close();
      },
    ),
  );
  return results;
}

/**
 * The longest `save()` latency while a snapshot of `megabytes` MiB is persisted with a
 * compaction of `compactedEntries` entries (saved 20 per save): a writer keeps saving 20
 * entries of 100 B (about one Ready under load) back to back, as the Raft loop does,
 * during the whole saveSnapshotAndCompact; for comparison, the same writer's 200 saves
 * before it.
 */
async function benchSavesDuringSnapshot(
  dir: string,
  megabytes: number,
  compactedEntries: number,
): Promise<string> {
  const dataDir = join(dir, `during-${compactedEntries}`);
  const storage = await KvLogStorage.open({ dataDir, clusterId: "bench", nodeId: "n1" });
  const data = new Uint8Array(megabytes * 1024 * 1024);
  for (let i = 0; i < data.length; i += 997) data[i] = i & 0xff;
  try {
    // Filled as the server fills it under load: about 20 entries per save (so, with the
    // log in segments, about one segment per 20 entries to delete at the compaction).
    let next = 1;
    while (next <= compactedEntries + 1_000) {
      await storage.save({
        hardState: { term: 1, vote: null, commit: next - 1 },
        entries: entriesFrom(next, 20, 100),
      });
      next += 20;
    }
    const baselineMs: number[] = [];
    for (let i = 0; i < 200; i++) {
      const started = performance.now();
      await storage.save({
        hardState: { term: 1, vote: null, commit: next - 1 },
        entries: entriesFrom(next, 20, 100),
      });
      baselineMs.push(performance.now() - started);
      next += 20;
    }
    baselineMs.sort((a, b) => a - b);
    let done = false;
    const latenciesMs: number[] = [];
    const writer = (async () => {
      while (!done) {
        const started = performance.now();
        await storage.save({
          hardState: { term: 1, vote: null, commit: next - 1 },
          entries: entriesFrom(next, 20, 100),
        });
        latenciesMs.push(performance.now() - started);
        next += 20;
      }
    })();
    const started = performance.now();
    await storage.saveSnapshotAndCompact({
      meta: { index: compactedEntries, term: 1, voters: ["n1"] },
      data,
    });
    const snapshotMs = performance.now() - started;
    done = true;
    await writer;
    latenciesMs.sort((a, b) => a - b);
    const median = latenciesMs[Math.floor(latenciesMs.length / 2)] ?? 0;
    const longest = latenciesMs.at(-1) ?? 0;
    return `saves during a ${megabytes} MiB snapshot + compaction of ${compactedEntries} entries: ` +
      `snapshot ${snapshotMs.toFixed(0)} ms, ${latenciesMs.length} saves, median ${
        median.toFixed(1)
      } ms, longest ${longest.toFixed(1)} ms (without a snapshot: median ${
        (baselineMs[100] ?? 0).toFixed(1)
      } ms, longest ${(baselineMs.at(-1) ?? 0).toFixed(1)} ms)`;
  } finally {
    storage.close();
  }
}

/** p50 and p90 of `count` timed calls of `body`, in ms. */
async function latencies(count: number, body: () => Promise<void> | void): Promise<string> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await body();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  const at = (share: number) => (times[Math.floor(count * share)] ?? 0).toFixed(3);
  return `p50 ${at(0.5)} ms, p90 ${at(0.9)} ms (${count} writes)`;
}

/** Latency of one small durable write: Deno KV against raw fdatasync (see the module doc). */
async function benchFsync(dir: string, count: number): Promise<void> {
  const record = new Uint8Array(120).fill(7);
  const kv = await Deno.openKv(join(dir, "fsync.kv"));
  try {
    let key = 0;
    console.log(
      `kv.set of 120 B:                          ${await latencies(
        count,
        () => kv.set(["k", key++], record).then(() => undefined),
      )}`,
    );
  } finally {
    kv.close();
  }
  using appended = await Deno.open(join(dir, "appended"), { create: true, append: true });
  console.log(`write + fdatasync, appending:             ${await latencies(count, () => {
    appended.writeSync(record);
    appended.syncDataSync();
  })}`);
  using preallocated = await Deno.open(join(dir, "preallocated"), { create: true, write: true });
  preallocated.writeSync(new Uint8Array(record.length * count));
  preallocated.syncSync();
  preallocated.seekSync(0, Deno.SeekMode.Start);
  console.log(`write + fdatasync, preallocated file:     ${await latencies(count, () => {
    preallocated.writeSync(record);
    preallocated.syncDataSync();
  })}`);
}

function print(result: Result): void {
  const perSecond = result.operations / result.seconds;
  const entriesPerSecond = result.entries > 0
    ? `, ${Math.round(result.entries / result.seconds)} entries/s`
    : "";
  const cpu = result.cpuSeconds === null
    ? ""
    : `, CPU ${(result.cpuSeconds * 1e6 / result.operations).toFixed(0)} µs/op`;
  console.log(
    `${result.name.padEnd(58)} ${String(result.operations).padStart(5)} ops in ${
      result.seconds.toFixed(2)
    } s: ${perSecond.toFixed(0)} ops/s, ${
      (1000 / perSecond).toFixed(2)
    } ms/op${cpu}${entriesPerSecond}`,
  );
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      dir: { type: "string" },
      quick: { type: "boolean", default: false },
      "during-snapshot": { type: "boolean", default: false },
      fsync: { type: "boolean", default: false },
    },
  });
  const scale = values.quick ? 0.2 : 1;
  const dir = await Deno.makeTempDir({
    prefix: "dlock_kv_bench_",
    ...(values.dir === undefined ? {} : { dir: values.dir }),
  });
  console.log(`Deno ${Deno.version.deno}, store under ${dir}`);
  try {
    if (values.fsync) {
      await benchFsync(dir, Math.round(2000 * scale));
    } else if (values["during-snapshot"]) {
      for (const compacted of [10_000, 50_000, 100_000]) {
        console.log(await benchSavesDuringSnapshot(dir, 3, compacted));
      }
    } else {
      print(await benchRawKv(dir, Math.round(1000 * scale), 1));
      print(await benchRawKv(dir, Math.round(2000 * scale), 8));
      print(await benchSaves(dir, "single", Math.round(1000 * scale), 1, 100));
      print(await benchSaves(dir, "batch18", Math.round(3000 * scale), 18, 80));
      print(await benchSaves(dir, "batch100", Math.round(300 * scale), 100, 100));
      print(await benchSaves(dir, "batch900", Math.round(50 * scale), 900, 100));
      print(await benchSaves(dir, "batch1024", Math.round(50 * scale), 1024, 100));
      for (const result of await benchSnapshot(dir, 10, 10_000, 500)) print(result);
      for (const result of await benchSnapshot(dir, 3, 20_000, 18)) print(result);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
