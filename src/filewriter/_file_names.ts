/**
 * Maps file names to log file names inside the data directory, injectively and without
 * any way to leave the directory.
 *
 * A name is kept as is when it is made of `A-Z a-z 0-9 _ - .` (a leading dot excepted);
 * every other byte of its UTF-8 form becomes `%XX`. When that would make the on-disk name
 * longer than the file system allows, the name becomes `~` + SHA-256 hex instead (`~` is
 * always escaped by the first form, so the two forms never collide). The real name is in
 * every record, so a hashed log is checked against it on open.
 *
 * @module
 */

/** Suffix of every log file. */
export const logSuffix = ".log";

const onDiskBytesMax = 250;

function isPlainByte(byte: number, index: number): boolean {
  if (byte >= 0x30 && byte <= 0x39) return true; // 0-9
  if (byte >= 0x41 && byte <= 0x5a) return true; // A-Z
  if (byte >= 0x61 && byte <= 0x7a) return true; // a-z
  if (byte === 0x5f || byte === 0x2d) return true; // _ -
  return byte === 0x2e && index > 0; // . but not leading (no hidden files)
}

function percentEncode(name: string): string {
  let out = "";
  const bytes = new TextEncoder().encode(name);
  for (let index = 0; index < bytes.length; index += 1) {
    const byte = bytes[index]!;
    out += isPlainByte(byte, index)
      ? String.fromCharCode(byte)
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join(
    "",
  );
}

/** Returns the log file name (no directory) for a valid file name. */
export async function logFileName(name: string): Promise<string> {
  const encoded = percentEncode(name);
  if (encoded.length + logSuffix.length <= onDiskBytesMax) return encoded + logSuffix;
  return `~${await sha256Hex(name)}${logSuffix}`;
}

/**
 * Checks that a log file named `logName` belongs to file `name` (the name read from its
 * records). False means the data directory was tampered with or is corrupt.
 */
export async function logFileBelongsTo(logName: string, name: string): Promise<boolean> {
  return await logFileName(name) === logName;
}

/** True when `entry` looks like a log file name this module produces. */
export function isLogFileName(entry: string): boolean {
  if (!entry.endsWith(logSuffix)) return false;
  const stem = entry.slice(0, -logSuffix.length);
  if (stem.startsWith("~")) return /^~[0-9a-f]{64}$/.test(stem);
  return /^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})(?:[A-Za-z0-9_.-]|%[0-9A-F]{2})*$/.test(stem);
}
