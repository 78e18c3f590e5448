/**
 * The storage contract every filewriter backend implements, and the bounds they share.
 *
 * A backend owns the fencing check: per file it remembers the highest token it accepted and
 * refuses an older one, and it remembers recent request ids so that a retried append is
 * applied once. Both checks and the append itself are atomic with respect to every other
 * append to the same file (STYLE.md: safety first).
 *
 * @module
 */

/** Request ids remembered per file for dedupe (the last N accepted appends). */
export const requestIdsPerFileMax = 10_000;

/** Appends waiting for one file before new ones are refused with RESOURCE_EXHAUSTED. */
export const pendingAppendsPerFileMax = 1_024;

/** Files one filewriter keeps (each holds a little state in memory). */
export const filesMax = 100_000;

/**
 * Largest content of one append any backend accepts, whatever `--max-content-bytes` says;
 * keeps one record well under the gRPC message limit the lock servers forward through.
 */
export const contentBytesMaxAbsolute = 8 * 1024 * 1024;

/** Request id length in UTF-8 bytes. */
export const requestIdBytesMax = 256;

/** One append, already validated by {@link validateAppendRequest}. */
export type AppendRequest = {
  /** File name (see `validateFileName`). */
  file: string;
  /** Name of the lock whose token fences this write. */
  lock: string;
  /** Fencing token: a non-negative safe integer (the Raft index of the grant). */
  token: number;
  /** Idempotency key; `null` turns dedupe off for this append. */
  requestId: string | null;
  /** The bytes to append. */
  data: Uint8Array;
};

/** What an accepted (or deduplicated) append did. */
export type AppendResult = {
  /** Byte offset in the file where this append's data starts. */
  offset: number;
  /** Bytes appended. */
  size: number;
  /** Token the append was accepted with (the original one for a duplicate). */
  token: number;
  /** True when the request id was seen before and nothing was appended now. */
  duplicate: boolean;
};

/** Outcome of {@link FileBackend.append}: accepted, or refused by the fence. */
export type AppendOutcome =
  | { status: "ok"; result: AppendResult }
  | { status: "stale"; highestToken: number; lock: string };

/** What the filewriter knows about one file. */
export type FileMeta = {
  /** Highest token accepted for the file. */
  highestToken: number;
  /** Lock name that came with {@link FileMeta.highestToken}. */
  lock: string;
  /** File size in bytes. */
  size: number;
  /** Number of appends applied (duplicates not counted). */
  appends: number;
};

/**
 * A fenced, deduplicating, append-only store of named files.
 *
 * Duties of an implementation:
 * - `append` first looks up `requestId` (a hit returns the original result with
 *   `duplicate: true` and appends nothing), then refuses a token lower than the highest
 *   accepted one (or equal with another lock name), then appends. All three happen as one
 *   atomic step per file.
 * - `append` resolves only once the append is durable (fsync / journaled majority write).
 * - Readers never see bytes of an append that was not acknowledged as durable.
 */
export interface FileBackend {
  /**
   * Appends `request.data` to `request.file` if the fence allows it.
   * @throws {InvalidArgumentError} when the request is malformed.
   * @throws {ResourceExhaustedError} when a bound would be exceeded.
   */
  append(request: AppendRequest): Promise<AppendOutcome>;
  /** Returns the file's content, or null when nothing was ever appended to it. */
  read(file: string): Promise<Uint8Array<ArrayBuffer> | null>;
  /** Returns the file's metadata, or null when nothing was ever appended to it. */
  meta(file: string): Promise<FileMeta | null>;
  /** Releases every resource (handles, locks, connections). Idempotent. */
  close(): Promise<void>;
}
