import assert from "node:assert/strict";
import {
  bucketIndexOf,
  bucketRangeOf,
  highestTrackableMicrosDefault,
  Histogram,
  subBucketCount,
} from "./histogram.ts";

Deno.test("bucket index and range agree for every value in 1 µs .. 60 s (sampled)", () => {
  let previousIndex = -1;
  // Every value below 1e5, then a geometric sweep up to 60 s.
  const values: number[] = [];
  for (let value = 1; value < 100_000; value++) values.push(value);
  for (
    let value = 100_000;
    value <= highestTrackableMicrosDefault;
    value = Math.ceil(value * 1.0007)
  ) {
    values.push(value);
  }
  for (const value of values) {
    const index = bucketIndexOf(value);
    assert.ok(index >= previousIndex, `index must not decrease at ${value}`);
    previousIndex = index;
    const { lowMicros, widthMicros } = bucketRangeOf(index);
    assert.ok(
      value >= lowMicros && value < lowMicros + widthMicros,
      `value ${value} in its bucket`,
    );
    assert.ok(widthMicros <= Math.max(1, lowMicros / 128), `bucket at ${value} is narrow enough`);
  }
  // Exact powers of two land at the start of their bucket.
  for (let power = 8; power <= 25; power++) {
    assert.equal(bucketRangeOf(bucketIndexOf(2 ** power)).lowMicros, 2 ** power);
  }
});

Deno.test("percentiles of a single value are within 1 % of it", () => {
  for (let value = 1; value <= highestTrackableMicrosDefault; value = Math.ceil(value * 1.37)) {
    const histogram = new Histogram();
    histogram.recordMicros(value);
    for (const percentile of [1, 50, 99, 99.9, 100]) {
      const estimate = histogram.percentileMicros(percentile);
      assert.ok(
        Math.abs(estimate - value) <= value * 0.01,
        `p${percentile} of ${value}: ${estimate}`,
      );
    }
  }
});

Deno.test("percentiles of a uniform spread match the exact order statistics within 1 %", () => {
  const histogram = new Histogram();
  const values: number[] = [];
  // Deterministic pseudo-random values spread over 10 µs .. 10 s (log-uniform).
  let state = 12345;
  for (let i = 0; i < 50_000; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const value = Math.round(10 * 10 ** (6 * (state / 2 ** 31)));
    values.push(value);
    histogram.recordMicros(value);
  }
  values.sort((a, b) => a - b);
  assert.equal(histogram.count, values.length);
  for (const percentile of [10, 50, 90, 99, 99.9, 100]) {
    const exact = values[Math.ceil((percentile / 100) * values.length) - 1] ?? Number.NaN;
    const estimate = histogram.percentileMicros(percentile);
    assert.ok(
      Math.abs(estimate - exact) <= exact * 0.01,
      `p${percentile}: exact ${exact}, estimate ${estimate}`,
    );
  }
  assert.equal(histogram.minMicros, values[0]);
  assert.equal(histogram.maxMicros, values[values.length - 1]);
});

Deno.test("small integers are exact and the bottom range is unit-width", () => {
  const histogram = new Histogram();
  for (let value = 1; value <= 100; value++) histogram.recordMicros(value);
  assert.equal(histogram.percentileMicros(50), 50);
  assert.equal(histogram.percentileMicros(99), 99);
  assert.equal(histogram.percentileMicros(100), 100);
  assert.equal(bucketIndexOf(subBucketCount - 1), subBucketCount - 1);
});

Deno.test("out-of-range values are clamped and counted", () => {
  const histogram = new Histogram();
  histogram.recordMicros(0);
  histogram.recordMicros(-5);
  histogram.recordMicros(highestTrackableMicrosDefault * 10);
  histogram.recordMicros(500);
  assert.equal(histogram.count, 4);
  assert.equal(histogram.clampedCount, 3);
  assert.equal(histogram.minMicros, 1);
  assert.equal(histogram.maxMicros, highestTrackableMicrosDefault);
  assert.equal(histogram.percentileMicros(100), highestTrackableMicrosDefault);
});

Deno.test("add merges counts, min and max; JSON round-trips", () => {
  const a = new Histogram();
  const b = new Histogram();
  for (let i = 1; i <= 1000; i++) a.recordMs(i / 10); // 0.1 .. 100 ms
  for (let i = 1; i <= 1000; i++) b.recordMs(100 + i); // 101 .. 1100 ms
  const merged = new Histogram();
  merged.add(a);
  merged.add(b);
  assert.equal(merged.count, 2000);
  assert.equal(merged.minMicros, 100);
  assert.equal(merged.maxMicros, 1_100_000);
  assert.ok(Math.abs(merged.percentileMs(50) - 100) <= 1);
  const copy = Histogram.fromJSON(JSON.parse(JSON.stringify(merged.toJSON())));
  for (const percentile of [1, 50, 99, 99.9]) {
    assert.equal(copy.percentileMicros(percentile), merged.percentileMicros(percentile));
  }
  assert.equal(copy.count, merged.count);
  assert.ok(Number.isNaN(new Histogram().percentileMicros(50)));
  assert.throws(() => merged.percentileMicros(0), RangeError);
});
