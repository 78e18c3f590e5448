import assert from "node:assert/strict";
import { SegmentIndex, type SegmentInfo, segmentKeys } from "./_segments.ts";

const segment = (firstIndex: number, lastIndex: number, partCount = 0): SegmentInfo => ({
  firstIndex,
  lastIndex,
  partCount,
});

Deno.test("find returns the segment holding an index, by binary search", () => {
  const index = new SegmentIndex([segment(1, 10), segment(11, 11, 2), segment(12, 30)]);
  assert.equal(index.find(0), undefined);
  assert.deepEqual(index.find(1), segment(1, 10));
  assert.deepEqual(index.find(10), segment(1, 10));
  assert.deepEqual(index.find(11), segment(11, 11, 2));
  assert.deepEqual(index.find(29), segment(12, 30));
  assert.equal(index.find(31), undefined);
  assert.equal(new SegmentIndex([]).find(1), undefined);
});

Deno.test("replaceFrom truncates the segment holding the index and drops the ones after", () => {
  const index = new SegmentIndex([segment(1, 10), segment(11, 20), segment(21, 30)]);
  index.replaceFrom(15, [segment(15, 16), segment(17, 17, 1)]);
  assert.deepEqual(index.all(), [
    segment(1, 10),
    segment(11, 14),
    segment(15, 16),
    segment(17, 17, 1),
  ]);
  index.replaceFrom(15, [segment(15, 40)]);
  assert.deepEqual(index.all(), [segment(1, 10), segment(11, 14), segment(15, 40)]);
  assert.throws(() => index.replaceFrom(41, [segment(40, 41)]), /overlaps/);
});

Deno.test("dead segments come from both ends, within a key budget, a segment's parts with it", () => {
  const index = new SegmentIndex([
    segment(1, 5),
    segment(6, 6, 3),
    segment(7, 12),
    segment(13, 20),
    segment(21, 25),
  ]);
  // Snapshot at 12, last index 20: 1..5, 6 (4 keys), 7..12 dead at the front, 21..25 at the end.
  assert.deepEqual(index.dead(12, 20, 100), [
    segment(1, 5),
    segment(6, 6, 3),
    segment(7, 12),
    segment(21, 25),
  ]);
  // A budget of 4 keys: segment 6 and its 3 parts (4 keys) do not fit after segment 1..5.
  assert.deepEqual(index.dead(12, 20, 4), [segment(1, 5)]);
  // A budget smaller than one segment still takes that segment.
  assert.deepEqual(index.dead(5, 20, 2), [segment(1, 5), segment(21, 25)]);
  index.remove([segment(1, 5)]);
  assert.deepEqual(index.dead(5, 20, 2), [segment(21, 25)]);
  // An empty log (last index = snapshot index): every segment is dead, also one straddling it.
  assert.equal(index.dead(15, 15, 100).length, index.size);
  assert.deepEqual(index.dead(0, 25, 100), []);
  assert.deepEqual(segmentKeys(segment(6, 6, 2)), [["log", 6n], ["log", 6n, 1], ["log", 6n, 2]]);
});
