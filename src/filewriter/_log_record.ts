/**
 * The record format of the file backend's per-file append-only log.
 *
 * ```
 * offset  size  field
 *      0     4  magic 0x31574644 ("DFW1", little endian)
 *      4     4  metaLength  (bytes of the JSON meta, <= recordMetaBytesMax)
 *      8     4  dataLength  (bytes of the data, <= contentBytesMaxAbsolute)
 *     12     4  CRC-32 (IEEE) of bytes 0..11, the meta and the data
 *     16     m  meta: UTF-8 JSON {file, lock, token, requestId, offset}
 *   16+m     d  data
 * ```
 *
 * One record is one append; it is written with one positioned write and fsynced before the
 * append is acknowledged, so only the last record of a log can be torn by a crash, and only
 * as a prefix of itself or with some 4096-byte blocks left as zeros (see file_backend.ts for
 * what is truncated and what is refused).
 *
 * @module
 */
import { contentBytesMaxAbsolute } from "./backend.ts";

/** First four bytes of every record. */
export const recordMagic = 0x31574644;
/** Bytes of the fixed header. */
export const recordHeaderBytes = 16;
/** Largest JSON meta of one record. */
export const recordMetaBytesMax = 4096;
/** Largest whole record. */
export const recordBytesMax = recordHeaderBytes + recordMetaBytesMax + contentBytesMaxAbsolute;

/** The meta stored with every record. */
export type RecordMeta = {
  /** File name (checked against the log's own name on open). */
  file: string;
  /** Lock name of the fence. */
  lock: string;
  /** Fencing token. */
  token: number;
  /** Request id, or null when the append had none. */
  requestId: string | null;
  /** Offset of the data in the file's content (the content size before this append). */
  offset: number;
};

const crcTable = buildCrcTable();

function buildCrcTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte += 1) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit += 1) {
      crc = (crc & 1) !== 0 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
    }
    table[byte] = crc >>> 0;
  }
  return table;
}

/** Continues a CRC-32 (IEEE 802.3, reflected) over `bytes`; start with `crc = 0`. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let value = ~crc >>> 0;
  for (let index = 0; index < bytes.length; index += 1) {
    value = (crcTable[(value ^ bytes[index]!) & 0xff]! ^ (value >>> 8)) >>> 0;
  }
  return ~value >>> 0;
}

/** Encodes one record. */
export function encodeRecord(meta: RecordMeta, data: Uint8Array): Uint8Array {
  const metaBytes = new TextEncoder().encode(JSON.stringify(meta));
  if (metaBytes.length > recordMetaBytesMax || data.length > contentBytesMaxAbsolute) {
    throw new Error(
      `invariant failed: record too large (meta ${metaBytes.length}, data ${data.length})`,
    );
  }
  const record = new Uint8Array(recordHeaderBytes + metaBytes.length + data.length);
  const view = new DataView(record.buffer);
  view.setUint32(0, recordMagic, true);
  view.setUint32(4, metaBytes.length, true);
  view.setUint32(8, data.length, true);
  record.set(metaBytes, recordHeaderBytes);
  record.set(data, recordHeaderBytes + metaBytes.length);
  let crc = crc32(record.subarray(0, 12));
  crc = crc32(record.subarray(recordHeaderBytes), crc);
  view.setUint32(12, crc, true);
  return record;
}

/** A parsed fixed header. */
export type RecordHeader = { metaLength: number; dataLength: number; crc: number };

/** Parses a fixed header; null when the magic or a length is impossible. */
export function decodeHeader(header: Uint8Array): RecordHeader | null {
  if (header.length < recordHeaderBytes) return null;
  const view = new DataView(header.buffer, header.byteOffset, recordHeaderBytes);
  if (view.getUint32(0, true) !== recordMagic) return null;
  const metaLength = view.getUint32(4, true);
  const dataLength = view.getUint32(8, true);
  if (metaLength === 0 || metaLength > recordMetaBytesMax) return null;
  if (dataLength > contentBytesMaxAbsolute) return null;
  return { metaLength, dataLength, crc: view.getUint32(12, true) };
}

/**
 * Checks the CRC of a complete record body (meta + data) against its header and parses
 * the meta; null when the CRC does not match or the meta is not a valid {@link RecordMeta}.
 */
export function decodeBody(
  headerBytes: Uint8Array,
  header: RecordHeader,
  body: Uint8Array,
): RecordMeta | null {
  let crc = crc32(headerBytes.subarray(0, 12));
  crc = crc32(body, crc);
  if (crc !== header.crc) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(
      body.subarray(0, header.metaLength),
    ));
  } catch {
    return null;
  }
  return isRecordMeta(parsed) ? parsed : null;
}

function isRecordMeta(value: unknown): value is RecordMeta {
  if (typeof value !== "object" || value === null) return false;
  const meta = value as Record<string, unknown>;
  return typeof meta.file === "string" && typeof meta.lock === "string" &&
    typeof meta.token === "number" && Number.isSafeInteger(meta.token) && meta.token >= 0 &&
    (meta.requestId === null || typeof meta.requestId === "string") &&
    typeof meta.offset === "number" && Number.isSafeInteger(meta.offset) && meta.offset >= 0;
}

/**
 * Looks for any complete, valid record starting at some offset of `bytes`. Used after a bad
 * header: a valid record further on means the damage is not a torn tail but corruption.
 */
export function containsValidRecord(bytes: Uint8Array): boolean {
  for (let start = 0; start + recordHeaderBytes <= bytes.length; start += 1) {
    if (bytes[start] !== 0x44) continue; // low byte of the magic, a cheap pre-filter
    const headerBytes = bytes.subarray(start, start + recordHeaderBytes);
    const header = decodeHeader(headerBytes);
    if (header === null) continue;
    const end = start + recordHeaderBytes + header.metaLength + header.dataLength;
    if (end > bytes.length) continue;
    if (decodeBody(headerBytes, header, bytes.subarray(start + recordHeaderBytes, end)) !== null) {
      return true;
    }
  }
  return false;
}
