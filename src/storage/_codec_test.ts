import assert from "node:assert/strict";
import {
  crc32,
  decodeEntry,
  decodeSegment,
  encodeEntry,
  encodeSegments,
  entryHeaderBytes,
  entryPartCount,
  kvLimits,
  segmentFrames,
  termInSegment,
} from "./_codec.ts";

Deno.test("crc32 gives the standard check value", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test("entries round-trip at every part boundary and never exceed a KV value", () => {
  const headRoom = kvLimits.valueBytesMax - entryHeaderBytes;
  for (
    const bytes of [
      0,
      1,
      headRoom,
      headRoom + 1,
      headRoom + kvLimits.valueBytesMax,
      headRoom + kvLimits.valueBytesMax + 1,
    ]
  ) {
    const data = new Uint8Array(bytes).map((_, i) => (i * 13) & 0xff);
    const entry = { index: 42, term: 2 ** 40 + 3, kind: "config" as const, data };
    const values = encodeEntry(entry);
    assert.equal(values.length, 1 + entryPartCount(bytes));
    for (const value of values) assert.ok(value.length <= kvLimits.valueBytesMax);
    assert.deepEqual(decodeEntry(42, values[0], values.slice(1)), entry);
  }
});

Deno.test("a damaged or truncated entry value is reported, not decoded", () => {
  const values = encodeEntry({
    index: 1,
    term: 1,
    kind: "normal",
    data: new Uint8Array(70_000).fill(3),
  });
  assert.match(
    String(decodeEntry(1, values[0], [])),
    /declares 70000 data bytes \(1 overflow parts\) but 0 parts/,
  );
  const flipped = values[1]!.slice();
  flipped[5] = 4;
  assert.match(String(decodeEntry(1, values[0], [flipped])), /checksum does not match/);
  assert.match(String(decodeEntry(1, new Uint8Array(3), [])), /fewer than a header/);
  const badKind = values[0]!.slice();
  badKind[0] = 9;
  assert.match(String(decodeEntry(1, badKind, values.slice(1))), /unknown kind code 9/);
});

Deno.test("segments pack entries up to one KV value; a big entry is a segment of its own", () => {
  const entry = (index: number, bytes: number) => ({
    index,
    term: index,
    kind: "normal" as const,
    data: new Uint8Array(bytes).map((_, i) => (index + i) & 0xff),
  });
  const fill = kvLimits.valueBytesMax - entryHeaderBytes; // one entry filling a value
  const half = kvLimits.valueBytesMax / 2 - entryHeaderBytes; // two fill a value exactly
  const entries = [
    entry(1, 10),
    entry(2, 0),
    entry(3, half),
    entry(4, half),
    entry(5, fill + 1), // big: its own segment with one overflow part
    entry(6, fill), // fills a value by itself
    entry(7, 1),
  ];
  const segments = encodeSegments(entries);
  assert.deepEqual(
    segments.map((segment) => [segment.firstIndex, segment.lastIndex, segment.values.length]),
    [[1, 3, 1], [4, 4, 1], [5, 5, 2], [6, 6, 1], [7, 7, 1]],
  );
  for (const segment of segments) {
    for (const value of segment.values) assert.ok(value.length <= kvLimits.valueBytesMax);
    const decoded = decodeSegment(segment.firstIndex, segment.values[0], segment.values.slice(1));
    assert.deepEqual(decoded, entries.slice(segment.firstIndex - 1, segment.lastIndex));
    for (let index = segment.firstIndex; index <= segment.lastIndex; index++) {
      assert.equal(termInSegment(segment.firstIndex, segment.values[0], index), index);
    }
  }
  assert.match(String(termInSegment(1, segments[0]!.values[0], 4)), /holds entries 1 to 3/);
  const frames = segmentFrames(5, segments[2]!.values[0]);
  assert.deepEqual(frames, { offsets: [0], big: true });
  // A big entry's head whose parts are lost.
  assert.match(String(decodeSegment(5, segments[2]!.values[0], [])), /1 overflow parts\) but 0/);
});
