import assert from "node:assert/strict";
import { Http2GoawayFilter } from "./_http2_goaway_filter.ts";

const preface = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** One HTTP/2 frame: 9-byte header, then `payload`. */
function frame(type: number, streamId: number, payload: number[]): Uint8Array {
  const bytes = new Uint8Array(9 + payload.length);
  bytes[0] = (payload.length >> 16) & 0xff;
  bytes[1] = (payload.length >> 8) & 0xff;
  bytes[2] = payload.length & 0xff;
  bytes[3] = type;
  bytes[4] = 0;
  new DataView(bytes.buffer).setUint32(5, streamId);
  bytes.set(payload, 9);
  return bytes;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

const settings = frame(0x4, 0, [0, 3, 0, 0, 0, 100]);
const headers = frame(0x1, 1, Array.from({ length: 40 }, (_, i) => i));
const data = frame(0x0, 1, Array.from({ length: 300 }, (_, i) => i & 0xff));
const emptyData = frame(0x0, 1, []);
const goaway = frame(0x7, 0, [0, 0, 0, 1, 0, 0, 0, 0]);
const ping = frame(0x6, 0, [1, 2, 3, 4, 5, 6, 7, 8]);

const stream = concat(preface, settings, headers, data, emptyData, goaway, ping, goaway);
const expected = concat(preface, settings, headers, data, emptyData, ping);

Deno.test("GOAWAY filter: drops every GOAWAY frame and passes the rest unchanged, in order", () => {
  const filter = new Http2GoawayFilter();
  assert.deepEqual(filter.push(stream), expected);
  assert.equal(filter.dropped, 2);
});

Deno.test("GOAWAY filter: the same output for every split of the stream into pushes", () => {
  // Every cut into two pieces, and byte-by-byte, and fixed-size pieces.
  for (let cut = 0; cut <= stream.byteLength; cut++) {
    const filter = new Http2GoawayFilter();
    const out = concat(filter.push(stream.subarray(0, cut)), filter.push(stream.subarray(cut)));
    assert.deepEqual(out, expected, `cut at ${cut}`);
    assert.equal(filter.dropped, 2);
  }
  for (const size of [1, 2, 7, 9, 10, 23, 25, 64]) {
    const filter = new Http2GoawayFilter();
    const parts: Uint8Array[] = [];
    for (let offset = 0; offset < stream.byteLength; offset += size) {
      parts.push(filter.push(stream.subarray(offset, offset + size)));
    }
    assert.deepEqual(concat(...parts), expected, `pieces of ${size}`);
  }
});

Deno.test("GOAWAY filter: its output does not change when the caller reuses its buffer", () => {
  const filter = new Http2GoawayFilter();
  const buffer = new Uint8Array(stream.byteLength);
  buffer.set(stream);
  const first = filter.push(buffer.subarray(0, 30)); // Preface and 6 bytes of a header.
  const kept = first.slice();
  buffer.fill(0xee, 0, 30);
  assert.deepEqual(first, kept);
  assert.deepEqual(concat(first, filter.push(buffer.subarray(30))), expected);
});

Deno.test("GOAWAY filter: a long frame split over many pushes passes through whole", () => {
  const filter = new Http2GoawayFilter();
  const header = frame(0x0, 1, []);
  header[0] = 0x00;
  header[1] = 0x40;
  header[2] = 0x00; // 16,384 bytes of payload, sent in pieces.
  let forwarded = filter.push(concat(preface, header)).byteLength;
  for (let sent = 0; sent < 16_384; sent += 1_000) {
    forwarded += filter.push(new Uint8Array(Math.min(1_000, 16_384 - sent))).byteLength;
  }
  forwarded += filter.push(goaway).byteLength;
  assert.equal(forwarded, preface.byteLength + 9 + 16_384);
  assert.equal(filter.dropped, 1);
});
