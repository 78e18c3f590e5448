/**
 * Length-prefixed frames over a byte stream (a TCP connection): each frame is a 4-byte
 * big-endian length followed by that many bytes (one encoded protobuf message). Shared
 * by the native client protocol's server (src/server/native.ts) and client
 * (src/client/_native_connection.ts), and by the TCP peer transport (tcp.ts).
 *
 * The native client protocol: on the client API port, a connection that starts with
 * {@link nativeMagic} carries `dlock.v1.StreamRequest` frames from the client and
 * `dlock.v1.StreamResponse` frames from the server, with exactly the semantics of the
 * gRPC `Stream` RPC (proto/dlock/v1/lock.proto). It exists because Deno 2.9.6 aborts a
 * whole process inside nghttp2 when an HTTP/2 session processes a GOAWAY
 * (denoland/deno#36788); plain TCP has no such frame.
 *
 * @module
 */

/** First bytes a native client sends on a new connection ("DLK1"). */
export const nativeMagic: Uint8Array = new TextEncoder().encode("DLK1");

/** A source of bytes (a Deno.Conn). */
export interface ByteSource {
  read(buffer: Uint8Array): Promise<number | null>;
}

/** A frame whose announced length exceeds the limit: the connection must be dropped. */
export class FrameTooLargeError extends Error {
  constructor(readonly frameBytes: number, readonly frameBytesMax: number) {
    super(`Cannot read a frame of ${frameBytes} bytes (limit ${frameBytesMax})`);
    this.name = "FrameTooLargeError";
  }
}

/** Reads length-prefixed frames (and, before them, raw bytes) from a byte source. */
export class FrameReader {
  #buffer = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  readonly #source: ByteSource;
  readonly #frameBytesMax: number;

  constructor(source: ByteSource, frameBytesMax: number) {
    this.#source = source;
    this.#frameBytesMax = frameBytesMax;
  }

  /** Bytes buffered but not consumed yet. */
  get buffered(): Uint8Array {
    return this.#buffer.subarray(this.#start, this.#end);
  }

  /**
   * Buffers at least `bytes` bytes (or all there are before the end of the stream) and
   * returns the buffered bytes without consuming them.
   */
  async peek(bytes: number): Promise<Uint8Array> {
    await this.#fill(bytes);
    return this.buffered;
  }

  /** Consumes `bytes` buffered bytes. */
  skip(bytes: number): void {
    this.#start = Math.min(this.#end, this.#start + bytes);
  }

  /**
   * The next frame (a copy), or null at the end of the stream.
   * @throws {FrameTooLargeError} when the announced length exceeds the limit.
   */
  async next(): Promise<Uint8Array | null> {
    if (!(await this.#fill(4))) return null;
    const length = new DataView(this.#buffer.buffer, this.#start, 4).getUint32(0);
    if (length > this.#frameBytesMax) throw new FrameTooLargeError(length, this.#frameBytesMax);
    if (!(await this.#fill(4 + length))) return null;
    const frame = this.#buffer.slice(this.#start + 4, this.#start + 4 + length);
    this.#start += 4 + length;
    return frame;
  }

  /** True when the next frame is complete in the buffer (no read needed). */
  get hasFrame(): boolean {
    if (this.#end - this.#start < 4) return false;
    const length = new DataView(this.#buffer.buffer, this.#start, 4).getUint32(0);
    return length > this.#frameBytesMax || this.#end - this.#start >= 4 + length;
  }

  async #fill(bytes: number): Promise<boolean> {
    while (this.#end - this.#start < bytes) {
      if (this.#start > 0) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      if (this.#buffer.byteLength < bytes) {
        const grown = new Uint8Array(Math.max(bytes, this.#buffer.byteLength * 2));
        grown.set(this.#buffer.subarray(0, this.#end));
        this.#buffer = grown;
      }
      const read = await this.#source.read(this.#buffer.subarray(this.#end));
      if (read === null) return false;
      this.#end += read;
    }
    return true;
  }
}

/** Prefixes each frame with its length and joins everything into one buffer. */
export function joinFrames(frames: readonly Uint8Array[], prefix?: Uint8Array): Uint8Array {
  let total = prefix?.byteLength ?? 0;
  for (const frame of frames) total += 4 + frame.byteLength;
  const buffer = new Uint8Array(total);
  const view = new DataView(buffer.buffer);
  let offset = 0;
  if (prefix !== undefined) {
    buffer.set(prefix, 0);
    offset = prefix.byteLength;
  }
  for (const frame of frames) {
    view.setUint32(offset, frame.byteLength);
    buffer.set(frame, offset + 4);
    offset += 4 + frame.byteLength;
  }
  return buffer;
}

/** Writes all of `bytes` to `conn`. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.byteLength;) {
    written += await conn.write(bytes.subarray(written));
  }
}

/**
 * Queues frames for one connection and writes everything queued in the same turn of
 * the event loop (and while a previous write is in flight) in one write call.
 */
export class FrameWriter {
  #frames: Uint8Array[] = [];
  #bytes = 0;
  #prefix: Uint8Array | undefined;
  #conn: Deno.Conn | null = null;
  #scheduled = false;
  #writing = false;
  #failed = false;
  readonly #queueBytesMax: number;
  readonly #onError: (error: unknown) => void;

  /**
   * @param queueBytesMax bytes queued (peer not reading) before the writer gives up.
   * @param onError called once when a write fails or the queue overflows.
   */
  constructor(queueBytesMax: number, onError: (error: unknown) => void, prefix?: Uint8Array) {
    this.#queueBytesMax = queueBytesMax;
    this.#onError = onError;
    this.#prefix = prefix;
  }

  /** Starts writing to `conn` (frames queued before are sent first). */
  attach(conn: Deno.Conn): void {
    this.#conn = conn;
    this.#schedule();
  }

  /** Queues one encoded frame. */
  push(frame: Uint8Array): void {
    if (this.#failed) return;
    this.#frames.push(frame);
    this.#bytes += 4 + frame.byteLength;
    if (this.#bytes > this.#queueBytesMax) {
      this.#fail(
        new Error(`Cannot queue more than ${this.#queueBytesMax} bytes for a slow reader`),
      );
      return;
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#writing || this.#conn === null) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      void this.#drain();
    });
  }

  #fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#frames = [];
    this.#bytes = 0;
    this.#onError(error);
  }

  async #drain(): Promise<void> {
    if (this.#writing || this.#conn === null) return;
    this.#writing = true;
    const conn = this.#conn;
    try {
      while (!this.#failed && (this.#frames.length > 0 || this.#prefix !== undefined)) {
        const buffer = joinFrames(this.#frames, this.#prefix);
        this.#frames = [];
        this.#bytes = 0;
        this.#prefix = undefined;
        await writeAll(conn, buffer);
      }
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#writing = false;
    }
  }
}
