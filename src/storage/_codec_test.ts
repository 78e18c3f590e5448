import assert from "node:assert/strict";
import {
  crc32,
  decodeEntry,
  encodeEntry,
  entryHeaderBytes,
  entryPartCount,
  kvLimits,
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
