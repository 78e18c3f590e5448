/**
 * Small binary codec shared by commands and snapshots: unsigned LEB128 varints for
 * integers up to 2^53 - 1, length-prefixed UTF-8 strings, CRC-32 and a 64-bit
 * non-cryptographic digest. Pure: no I/O.
 *
 * @module
 */

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Thrown by {@link ByteReader} when the input does not parse. Caught by its callers. */
export class DecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DecodeError";
  }
}

/** Appends values to a growable byte buffer. */
export class ByteWriter {
  #bytes: Uint8Array;
  #length = 0;

  constructor(initialCapacityBytes = 64) {
    this.#bytes = new Uint8Array(initialCapacityBytes);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#length;
  }

  #reserve(extraBytes: number): void {
    const needed = this.#length + extraBytes;
    if (needed <= this.#bytes.length) return;
    let capacity = this.#bytes.length * 2;
    while (capacity < needed) capacity *= 2;
    const grown = new Uint8Array(capacity);
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
  }

  /** Writes one byte (0..255). */
  byte(value: number): void {
    this.#reserve(1);
    this.#bytes[this.#length++] = value & 0xff;
  }

  /** Writes raw bytes. */
  raw(bytes: Uint8Array): void {
    this.#reserve(bytes.length);
    this.#bytes.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  /** Writes a non-negative safe integer as an unsigned LEB128 varint (at most 8 bytes). */
  varint(value: number): void {
    this.#reserve(8);
    let rest = value;
    while (rest >= 0x80) {
      this.#bytes[this.#length++] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.#bytes[this.#length++] = rest;
  }

  /** Writes a length-prefixed UTF-8 string. */
  string(value: string): void {
    // Fast path for short ASCII strings (most lock names): no TextEncoder call.
    if (value.length < 0x80 && isAscii(value)) {
      this.#reserve(1 + value.length);
      this.#bytes[this.#length++] = value.length;
      for (let i = 0; i < value.length; i++) this.#bytes[this.#length++] = value.charCodeAt(i);
      return;
    }
    const encoded = textEncoder.encode(value);
    this.varint(encoded.length);
    this.raw(encoded);
  }

  /** Writes a 32-bit unsigned integer, little endian. */
  uint32(value: number): void {
    this.#reserve(4);
    this.#bytes[this.#length++] = value & 0xff;
    this.#bytes[this.#length++] = (value >>> 8) & 0xff;
    this.#bytes[this.#length++] = (value >>> 16) & 0xff;
    this.#bytes[this.#length++] = (value >>> 24) & 0xff;
  }

  /** A copy-free view of the written bytes (valid until the next write). */
  view(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }

  /** The written bytes, in a buffer of exactly their length. */
  finish(): Uint8Array {
    return this.#bytes.slice(0, this.#length);
  }
}

function isAscii(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    if (value.charCodeAt(i) > 0x7f) return false;
  }
  return true;
}

/** Reads what {@link ByteWriter} wrote; every method throws {@link DecodeError} on bad input. */
export class ByteReader {
  readonly #bytes: Uint8Array;
  #offset = 0;
  readonly #end: number;

  constructor(bytes: Uint8Array, end = bytes.length) {
    this.#bytes = bytes;
    this.#end = end;
  }

  /** Current read position. */
  get offset(): number {
    return this.#offset;
  }

  /** True when every byte up to the end has been read. */
  get done(): boolean {
    return this.#offset === this.#end;
  }

  /** Reads one byte. */
  byte(): number {
    if (this.#offset >= this.#end) throw new DecodeError(`unexpected end at byte ${this.#offset}`);
    return this.#bytes[this.#offset++] as number;
  }

  /** Reads a boolean stored as one byte 0 or 1. */
  boolean(): boolean {
    const value = this.byte();
    if (value > 1) throw new DecodeError(`boolean byte is ${value}, expected 0 or 1`);
    return value === 1;
  }

  /** Reads an unsigned LEB128 varint; rejects values above Number.MAX_SAFE_INTEGER. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let count = 0; count < 8; count++) {
      const part = this.byte();
      value += (part & 0x7f) * scale;
      if ((part & 0x80) === 0) {
        if (value > Number.MAX_SAFE_INTEGER) {
          throw new DecodeError(`integer above 2^53 - 1 at byte ${this.#offset}`);
        }
        return value;
      }
      scale *= 0x80;
    }
    throw new DecodeError(`varint longer than 8 bytes at byte ${this.#offset}`);
  }

  /** Reads a length-prefixed UTF-8 string of at most `bytesMax` bytes. */
  string(bytesMax: number): string {
    const length = this.varint();
    if (length > bytesMax) {
      throw new DecodeError(
        `string of ${length} bytes exceeds ${bytesMax} at byte ${this.#offset}`,
      );
    }
    if (this.#offset + length > this.#end) {
      throw new DecodeError(`string of ${length} bytes runs past the end at byte ${this.#offset}`);
    }
    const start = this.#offset;
    this.#offset += length;
    // Fast path for ASCII (most lock names).
    let ascii = length < 64;
    for (let i = start; ascii && i < start + length; i++) {
      if ((this.#bytes[i] as number) > 0x7f) ascii = false;
    }
    if (ascii) {
      let result = "";
      for (let i = start; i < start + length; i++) {
        result += String.fromCharCode(this.#bytes[i] as number);
      }
      return result;
    }
    try {
      return textDecoder.decode(this.#bytes.subarray(start, start + length));
    } catch {
      throw new DecodeError(`string at byte ${start} is not valid UTF-8`);
    }
  }

  /** Reads a 32-bit unsigned little-endian integer. */
  uint32(): number {
    const b0 = this.byte();
    const b1 = this.byte();
    const b2 = this.byte();
    const b3 = this.byte();
    return (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)) >>> 0;
  }
}

const crcTable: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3) of `bytes`, as an unsigned 32-bit integer. */
export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) {
    crc = (crcTable[(crc ^ (bytes[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * A 64-bit non-cryptographic digest of `bytes` as 16 hex digits (two independent
 * 32-bit multiply-xorshift lanes). Good for comparing replicas in simulations; not
 * for security.
 */
export function digest64Hex(bytes: Uint8Array): string {
  let h1 = 0xdeadbeef ^ bytes.length;
  let h2 = 0x41c6ce57 ^ bytes.length;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    h1 = Math.imul(h1 ^ b, 2654435761);
    h2 = Math.imul(h2 ^ b, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (h1 >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0");
}
