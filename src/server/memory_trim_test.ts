import assert from "node:assert/strict";
import { createLogger } from "../log.ts";
import { MemoryTrimmer, trimMemory, type TrimResult } from "./memory_trim.ts";

const mebibyte = 1024 * 1024;

/** Allocates about `mebibytes` MiB of arrays of doubles (kept by the caller). */
function allocate(mebibytes: number): number[][] {
  const arrays: number[][] = [];
  // 16,384 doubles = 128 KiB each.
  for (let index = 0; index < mebibytes * 8; index++) {
    arrays.push(Array.from({ length: 16_384 }, (_, value) => value + 0.5));
  }
  return arrays;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 10 ms until true, or fails after `timeoutMs`. */
async function waitFor(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadlineMs = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadlineMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A debug-level JSON logger whose lines land in `lines`. */
function capturingLogger() {
  const lines: string[] = [];
  const logger = createLogger({
    format: "json",
    level: "debug",
    write: (line) => lines.push(line),
  });
  return { lines, logger };
}

Deno.test("trimMemory collects garbage the heap still holds and gives the pages back", () => {
  let garbage: number[][] | null = allocate(48);
  assert.equal(garbage.length, 48 * 8);
  garbage = null;
  const result = trimMemory();
  assert.notEqual(result, null);
  const { heapBytesBefore, heapBytesAfter, collectMs } = result as TrimResult;
  assert.ok(
    heapBytesBefore - heapBytesAfter >= 32 * mebibyte,
    `heap ${heapBytesBefore} -> ${heapBytesAfter} bytes`,
  );
  assert.ok(collectMs > 0);
});

Deno.test("MemoryTrimmer trims once the activity stops, not while it goes on", async () => {
  const { lines, logger } = capturingLogger();
  const trims: TrimResult[] = [];
  let activity = 0;
  const working = setInterval(() => activity++, 10);
  const trimmer = new MemoryTrimmer({
    activity: () => activity,
    logger,
    checkIntervalMs: 20,
    quietMs: 150,
    quietJitterMs: 0,
    heapGrowthBytesMin: 8 * mebibyte,
    pauseMsMax: 10_000,
    onTrim: (result) => trims.push(result),
  });
  try {
    assert.equal(trims.length, 1, "the constructor trims once");
    let garbage: number[][] | null = allocate(32);
    await sleep(100);
    garbage = null;
    await sleep(500);
    assert.equal(trims.length, 1, "no trim while the activity counter moves");
    clearInterval(working);
    await waitFor("a trim after the activity stopped", () => trims.length === 2, 5_000);
    const trim = trims[1] as TrimResult;
    assert.ok(trim.heapBytesBefore - trim.heapBytesAfter >= 16 * mebibyte);
    assert.ok(lines.some((line) => line.includes("trimmed memory")));
    assert.equal(garbage, null);
    // Quiet, but the heap did not grow again: no further trim.
    await sleep(300);
    assert.equal(trims.length, 2);
  } finally {
    clearInterval(working);
    trimmer.stop();
  }
});

Deno.test("MemoryTrimmer skips a trim whose predicted pause is too long", async () => {
  const { lines, logger } = capturingLogger();
  const trims: TrimResult[] = [];
  const trimmer = new MemoryTrimmer({
    activity: () => 0,
    logger,
    checkIntervalMs: 20,
    quietMs: 0,
    quietJitterMs: 0,
    heapGrowthBytesMin: 8 * mebibyte,
    // 1 ms per MiB: a heap of tens of MiB is predicted to pause longer than 5 ms.
    collectMsPerUsedMebibyte: 1,
    pauseMsMax: 5,
    onTrim: (result) => trims.push(result),
  });
  try {
    const kept = allocate(32);
    await waitFor(
      "the refusal",
      () => lines.some((line) => line.includes("the pause would be too long")),
      5_000,
    );
    assert.equal(trims.length, 1, "only the constructor's trim");
    assert.equal(kept.length, 32 * 8);
  } finally {
    trimmer.stop();
  }
});
