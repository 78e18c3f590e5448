/**
 * Gives memory back to the operating system once a burst of work is over.
 *
 * Why: during a burst (100,000 acquires in a few seconds) V8 grows its young generation
 * to its maximum (two semi-spaces of 32 MiB) and lets old space fill with garbage before
 * a mark-compact; glibc keeps the freed native buffers of the burst (Deno's I/O and Deno
 * KV) in its heap. Nothing gives that back in a Deno server that keeps timers running,
 * so a server that once took a burst kept ~150 MiB more than its live data needed.
 * Measured with 100,000 held locks (3 servers, `bench` scenario d setup, 2 s after the
 * last acquire): V8 heap 124-177 MiB of which 35-38 MiB live; RSS 234-285 MiB. With this
 * trimmer: heap 36-38 MiB, RSS 105-123 MiB.
 *
 * What: every {@link MemoryTrimmerOptions.checkIntervalMs} the trimmer looks at an
 * activity counter (the applied Raft index). When it has not moved for
 * {@link MemoryTrimmerOptions.quietMs} (plus a random jitter, so that the members of a
 * cluster do not all collect at once) and the V8 heap grew by at least
 * {@link MemoryTrimmerOptions.heapGrowthBytesMin} since the last trim, it runs one full
 * garbage collection (which also shrinks the young generation) and then, where
 * available, glibc's `malloc_trim(0)`. Busy periods are never interrupted: the pause
 * only happens on a quiet server, at most once per burst.
 *
 * The pause: a full GC stops the event loop (at 100,000 locks 60-100 ms on a busy
 * 2-core machine; 240-370 ms when the three servers collected at the same moment, which
 * the jitter avoids). A leader's pause delays its heartbeats, so the trimmer predicts
 * the pause from the last measured one (milliseconds per used heap byte; a measured
 * default before the first) and skips a trim predicted longer than
 * {@link MemoryTrimmerOptions.pauseMsMax}. The server passes its election timeout minus
 * two heartbeats: a follower campaigns only after a whole election timeout without a
 * heartbeat, and the leader sent one at most a heartbeat interval before pausing.
 *
 * Both mechanisms are optional: the GC needs `node:v8`'s `setFlagsFromString` and
 * `node:vm` (present in Deno 2); `malloc_trim` needs Linux with glibc and the FFI
 * permission (granted by `deno run -A`, which `dlock server` is run with). Without them
 * the trimmer does less, and never fails.
 *
 * @module
 */
import v8 from "node:v8";
import vm from "node:vm";
import type { Logger } from "../log.ts";

/** What one trim did. */
export interface TrimResult {
  /** Resident bytes of the V8 heap before and after. */
  readonly heapBytesBefore: number;
  readonly heapBytesAfter: number;
  /** Used (live and not yet collected) bytes of the V8 heap before. */
  readonly heapUsedBytesBefore: number;
  /** Milliseconds of the garbage collection (0 when unavailable). */
  readonly collectMs: number;
  /** Milliseconds of `malloc_trim` (0 when unavailable). */
  readonly mallocTrimMs: number;
}

/** Options of {@link MemoryTrimmer}. */
export interface MemoryTrimmerOptions {
  /** A counter that moves while the server works (the applied Raft index). */
  readonly activity: () => number;
  readonly logger: Logger;
  /** Longest pause a trim may be predicted to take (default 200 ms). */
  readonly pauseMsMax?: number;
  /** How often to look (default 100 ms). */
  readonly checkIntervalMs?: number;
  /** How long the activity counter must stay still before a trim (default 400 ms). */
  readonly quietMs?: number;
  /**
   * Up to this much more quiet time, drawn at random per burst (default 800 ms), so the
   * servers of a cluster, which all go quiet together, do not collect at the same time:
   * on a small machine their collections then compete for the cores (three at once
   * took 240-350 ms instead of about 100) and all members pause together.
   */
  readonly quietJitterMs?: number;
  /** Heap growth since the last trim that makes a trim worth its pause (default 16 MiB). */
  readonly heapGrowthBytesMin?: number;
  /**
   * Assumed cost of a collection until one is measured, in milliseconds per MiB of used
   * heap (default 1).
   */
  readonly collectMsPerUsedMebibyte?: number;
  /** Called after each trim (tests, diagnostics). */
  readonly onTrim?: (result: TrimResult) => void;
}

const mebibyte = 1024 * 1024;

/**
 * Cost of a full collection before any was measured: 1 ms per MiB of used heap. Measured
 * on a 2-core machine, three servers collecting at once after taking 100,000 locks:
 * 0.8-1.2 ms/MiB, up to 3.2 ms/MiB with other heavy work running. (Live objects are
 * what costs; garbage is cheap, so a heap full of garbage costs less per used MiB.)
 */
const collectMsPerUsedByteDefault = 1 / mebibyte;

type Collect = () => void;

let collectGarbage: Collect | null | undefined;

/**
 * A function running a full garbage collection, or null where it cannot be had.
 * `--expose-gc` set at run time only exposes `gc` to contexts created afterwards, hence
 * the new `node:vm` context.
 */
function garbageCollector(): Collect | null {
  if (collectGarbage !== undefined) return collectGarbage;
  collectGarbage = null;
  try {
    v8.setFlagsFromString("--expose-gc");
    const exposed: unknown = vm.runInNewContext("gc");
    if (typeof exposed === "function") {
      collectGarbage = () => {
        exposed();
      };
    }
  } catch {
    // No gc in this runtime: trims only trim malloc.
  }
  return collectGarbage;
}

type MallocTrim = () => void;

let mallocTrim: MallocTrim | null | undefined;

/** glibc's `malloc_trim(0)`, or null (no FFI permission, not glibc, not Linux). */
function mallocTrimmer(): MallocTrim | null {
  if (mallocTrim !== undefined) return mallocTrim;
  mallocTrim = null;
  if (Deno.build.os !== "linux") return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    const library = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    mallocTrim = () => {
      library.symbols.malloc_trim(0n);
    };
  } catch {
    // musl, or no libc.so.6: nothing to trim with.
  }
  return mallocTrim;
}

/**
 * Runs one full garbage collection and `malloc_trim(0)`, where available (see the
 * module documentation). Blocks the event loop meanwhile. Returns null when neither is
 * available.
 */
export function trimMemory(): TrimResult | null {
  const collect = garbageCollector();
  const trim = mallocTrimmer();
  if (collect === null && trim === null) return null;
  const before = v8.getHeapStatistics();
  const startMs = performance.now();
  collect?.();
  const collectedMs = performance.now();
  trim?.();
  return {
    heapBytesBefore: before.total_physical_size,
    heapBytesAfter: v8.getHeapStatistics().total_physical_size,
    heapUsedBytesBefore: before.used_heap_size,
    collectMs: collect === null ? 0 : collectedMs - startMs,
    mallocTrimMs: trim === null ? 0 : performance.now() - collectedMs,
  };
}

/** Trims memory when the server goes quiet after a burst; see the module documentation. */
export class MemoryTrimmer {
  readonly #options: MemoryTrimmerOptions;
  readonly #pauseMsMax: number;
  readonly #quietMs: number;
  readonly #quietJitterMs: number;
  /** Quiet time wanted before the next trim: quietMs plus this burst's jitter. */
  #quietMsWanted: number;
  readonly #heapGrowthBytesMin: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastActivity: number;
  #lastActiveMs = performance.now();
  #heapBytesBaseline = 0;
  /** Cost of a collection, measured by the last trim after the start. */
  #collectMsPerUsedByte: number;

  /**
   * Trims once now (the memory of the start and the restore; call it before the server
   * serves, when a pause harms nobody) and starts watching. Call {@link stop} to end.
   */
  constructor(options: MemoryTrimmerOptions) {
    this.#options = options;
    this.#pauseMsMax = options.pauseMsMax ?? 200;
    this.#quietMs = options.quietMs ?? 400;
    this.#quietJitterMs = options.quietJitterMs ?? 800;
    this.#quietMsWanted = this.#quietMs + Math.random() * this.#quietJitterMs;
    this.#heapGrowthBytesMin = options.heapGrowthBytesMin ?? 16 * 1024 * 1024;
    this.#collectMsPerUsedByte = options.collectMsPerUsedMebibyte === undefined
      ? collectMsPerUsedByteDefault
      : options.collectMsPerUsedMebibyte / mebibyte;
    this.#lastActivity = options.activity();
    if (!this.#trim(false)) return;
    this.#timer = setInterval(() => this.#check(), options.checkIntervalMs ?? 100);
    // The trimmer alone must not keep a process alive.
    Deno.unrefTimer(this.#timer);
  }

  /** Stops watching. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    const nowMs = performance.now();
    const activity = this.#options.activity();
    if (activity !== this.#lastActivity) {
      this.#lastActivity = activity;
      if (nowMs - this.#lastActiveMs >= this.#quietMsWanted) {
        // A new burst after a quiet time: a new place in the order of the servers.
        this.#quietMsWanted = this.#quietMs + Math.random() * this.#quietJitterMs;
      }
      this.#lastActiveMs = nowMs;
      return;
    }
    if (nowMs - this.#lastActiveMs < this.#quietMsWanted) return;
    const heap = v8.getHeapStatistics();
    if (heap.total_physical_size - this.#heapBytesBaseline < this.#heapGrowthBytesMin) return;
    const predictedPauseMs = this.#collectMsPerUsedByte * heap.used_heap_size;
    if (predictedPauseMs > this.#pauseMsMax) {
      // Wait for more growth before asking again.
      this.#heapBytesBaseline = heap.total_physical_size;
      this.#options.logger.info("not trimming memory: the pause would be too long", {
        predictedPauseMs: Math.round(predictedPauseMs),
        pauseMsMax: this.#pauseMsMax,
        heapBytes: heap.total_physical_size,
      });
      return;
    }
    this.#trim();
  }

  /**
   * Trims; returns false when there is nothing to trim with. `measure`: learn the cost
   * of a collection from this one (not from the first, which also pays for the start:
   * code compiled and the restore, often while the other servers start too).
   */
  #trim(measure = true): boolean {
    const result = trimMemory();
    if (result === null) {
      this.#options.logger.debug("not trimming memory: no gc and no malloc_trim here");
      return false;
    }
    this.#heapBytesBaseline = result.heapBytesAfter;
    if (measure && result.collectMs > 0) {
      this.#collectMsPerUsedByte = result.collectMs / Math.max(1, result.heapUsedBytesBefore);
    }
    const fields = {
      heapBytesBefore: result.heapBytesBefore,
      heapBytesAfter: result.heapBytesAfter,
      collectMs: Math.round(result.collectMs),
      mallocTrimMs: Math.round(result.mallocTrimMs),
    };
    if (result.collectMs + result.mallocTrimMs > this.#pauseMsMax) {
      this.#options.logger.info("trimmed memory, with a long pause", fields);
    } else {
      this.#options.logger.debug("trimmed memory", fields);
    }
    this.#options.onTrim?.(result);
    return true;
  }
}
