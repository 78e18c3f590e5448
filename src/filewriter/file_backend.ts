/**
 * The embedded backend (`--backend file:DIR`): one append-only log of records per file.
 *
 * Layout of the data directory:
 * ```
 * DIR/FORMAT          {"format":"dlock-filewriter-log","version":1}
 * DIR/LOCK            flock()ed while a filewriter uses the directory
 * DIR/files/NAME.log  records (see _log_record.ts), one per accepted append
 * ```
 *
 * A record carries the data and its metadata (lock, token, request id, offset) under one
 * CRC, so data and metadata can never disagree: there is no second write to lose in a
 * crash. An append writes its record at the end of the log, `fdatasync`s it (and the
 * directory for a new file) and only then replies. On open, every log is scanned and the
 * highest token, size and the last request ids of a file are rebuilt from its records.
 *
 * Torn tails. Only the last record can be unacknowledged, and a crash can leave it in two
 * shapes only: a kill during the write leaves a prefix of the record (fewer bytes than a
 * header, or a valid header whose record runs past the end of the file); a power loss
 * before `fdatasync` finished can leave the file long enough for the record while some of
 * its 4096-byte, offset-aligned blocks were never written and read back as zeros (both can
 * combine). So the bytes after the last valid record are truncated away, with a warning,
 * only when they have one of those shapes:
 * - fewer than a header's bytes that are the start of a valid header or include a zeroed
 *   block part;
 * - a valid header whose record runs past the end of the file, unless the bytes there form a
 *   valid record once a length field is taken from the file size (a damaged length field of
 *   a complete record, not a short write);
 * - a complete last record that fails its checksum, when some 4096-byte-aligned block's part
 *   inside it is all zeros;
 * - an unreadable header with at least a header's bytes left, when the block part holding
 *   (some of) the header is all zeros, the rest fits one record and holds no valid record.
 * Anything else makes the open fail with {@link CorruptDataError} and changes nothing; the
 * message gives the position and the `truncate -s` command for an operator who accepts the
 * loss. The reason is fencing: truncating a record that was acknowledged would lower the
 * file's highest token and let a stale holder append again, so damage that a crash cannot
 * cause (bit flips, overwritten bytes) must never be "repaired". That includes garbage
 * after the last valid record that is neither the start of a record nor zeroed blocks,
 * however short: the filewriter writes nothing else, so such bytes came from something
 * else, and we cannot tell whether they replaced or hid acknowledged data. What is left: a block part that is naturally zero
 * (in the data of an acknowledged record) cannot be told from an unwritten one, so damage
 * elsewhere in such a last record is still treated as torn; a file cut short by something
 * other than a crash looks like a short write.
 *
 * Bounds: request ids remembered per file ({@link requestIdsPerFileMax}), files, queued
 * appends per file. Opening scans every log, so start-up time grows with the data.
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { InvalidArgumentError, ResourceExhaustedError } from "../errors.ts";
import {
  type AppendOutcome,
  type AppendRequest,
  type AppendResult,
  contentBytesMaxAbsolute,
  type FileBackend,
  type FileMeta,
  filesMax,
  pendingAppendsPerFileMax,
  requestIdsPerFileMax,
} from "./backend.ts";
import { invariant } from "./_invariant.ts";
import { KeyedMutex } from "./_keyed_mutex.ts";
import { isLogFileName, logFileBelongsTo, logFileName } from "./_file_names.ts";
import {
  containsValidRecord,
  decodeBody,
  decodeHeader,
  encodeRecord,
  recordBytesMax,
  recordHeaderBytes,
  recordMagic,
  type RecordMeta,
  recordMetaBytesMax,
} from "./_log_record.ts";
import { validateAppendRequest, validateFileName } from "./validate.ts";

const formatContent = { format: "dlock-filewriter-log", version: 1 } as const;

/** The data directory is damaged in a way a crash cannot cause; nothing was changed. */
export class CorruptDataError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CorruptDataError";
  }
}

/** The data directory is in use by another filewriter process. */
export class DataDirectoryBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DataDirectoryBusyError";
  }
}

/** Options of {@link LogFileBackend.open}. */
export type LogFileBackendOptions = {
  /** The data directory; created when missing. */
  directory: string;
  /** Request ids remembered per file (default {@link requestIdsPerFileMax}). */
  requestIdsPerFileMax?: number;
  /** Told about repairs made on open (a torn tail truncated). */
  onWarning?: (message: string) => void;
};

type FileState = {
  name: string;
  path: string;
  highestToken: number;
  lock: string;
  size: number;
  appends: number;
  /** Bytes of the log that hold acknowledged records; readers never look past this. */
  logBytes: number;
  recent: Map<string, AppendResult>;
};

/** The `file:DIR` backend. Create with {@link LogFileBackend.open}. */
export class LogFileBackend implements FileBackend {
  readonly #root: string;
  readonly #filesDirectory: string;
  readonly #lockFile: Deno.FsFile;
  readonly #requestIdsMax: number;
  readonly #states: Map<string, FileState>;
  readonly #broken = new Map<string, Error>();
  readonly #mutex = new KeyedMutex(pendingAppendsPerFileMax);
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;

  private constructor(
    root: string,
    lockFile: Deno.FsFile,
    requestIdsMax: number,
    states: Map<string, FileState>,
  ) {
    this.#root = root;
    this.#filesDirectory = join(root, "files");
    this.#lockFile = lockFile;
    this.#requestIdsMax = requestIdsMax;
    this.#states = states;
  }

  /**
   * Opens (or initialises) a data directory and rebuilds the state of every file.
   * @throws {CorruptDataError} when the directory or a log is damaged beyond a torn tail.
   * @throws {DataDirectoryBusyError} when another process holds the directory.
   */
  static async open(options: LogFileBackendOptions): Promise<LogFileBackend> {
    const requestIdsMax = options.requestIdsPerFileMax ?? requestIdsPerFileMax;
    invariant(requestIdsMax >= 1, "requestIdsPerFileMax must be at least 1");
    await Deno.mkdir(options.directory, { recursive: true });
    const root = await Deno.realPath(options.directory);
    const lockFile = await Deno.open(join(root, "LOCK"), { read: true, write: true, create: true });
    try {
      if (!(await lockFile.tryLock(true))) {
        throw new DataDirectoryBusyError(
          `Cannot open the data directory as another filewriter process uses it: received ${root}`,
        );
      }
      await ensureFormat(root);
      const filesDirectory = join(root, "files");
      await Deno.mkdir(filesDirectory, { recursive: true });
      await syncDirectory(root);
      const states = await loadStates(filesDirectory, requestIdsMax, options.onWarning);
      return new LogFileBackend(root, lockFile, requestIdsMax, states);
    } catch (error) {
      lockFile.close();
      throw error;
    }
  }

  /** The resolved data directory. */
  get directory(): string {
    return this.#root;
  }

  /** See {@link FileBackend.append}. */
  async append(request: AppendRequest): Promise<AppendOutcome> {
    validateAppendRequest(request);
    if (request.data.length > contentBytesMaxAbsolute) {
      throw new InvalidArgumentError(
        `Cannot append to file ${request.file} as the content is over ${contentBytesMaxAbsolute} bytes: received ${request.data.length} bytes`,
      );
    }
    return await this.#track(this.#mutex.run(request.file, () => this.#appendLocked(request)));
  }

  async #appendLocked(request: AppendRequest): Promise<AppendOutcome> {
    this.#assertOpen();
    const broken = this.#broken.get(request.file);
    if (broken !== undefined) throw broken;
    const state = this.#states.get(request.file);
    if (state !== undefined) {
      const original = request.requestId === null ? undefined : state.recent.get(request.requestId);
      if (original !== undefined) return { status: "ok", result: { ...original, duplicate: true } };
      if (
        request.token < state.highestToken ||
        (request.token === state.highestToken && request.lock !== state.lock)
      ) {
        return { status: "stale", highestToken: state.highestToken, lock: state.lock };
      }
    } else if (this.#states.size >= filesMax) {
      throw new ResourceExhaustedError(
        `Cannot create file ${request.file} as the filewriter already holds ${filesMax} files: received one more`,
      );
    }
    const target = state ?? await this.#newState(request.file);
    const meta: RecordMeta = {
      file: request.file,
      lock: request.lock,
      token: request.token,
      requestId: request.requestId,
      offset: target.size,
    };
    const record = encodeRecord(meta, request.data);
    await this.#writeRecord(target, record, state === undefined);
    const result: AppendResult = {
      offset: target.size,
      size: request.data.length,
      token: request.token,
      duplicate: false,
    };
    applyRecord(
      target,
      meta,
      request.data.length,
      target.logBytes + record.length,
      this.#requestIdsMax,
    );
    if (state === undefined) this.#states.set(request.file, target);
    return { status: "ok", result };
  }

  /** Writes and syncs one record at the end of the acknowledged log. */
  async #writeRecord(state: FileState, record: Uint8Array, isNew: boolean): Promise<void> {
    const file = await Deno.open(state.path, { write: true, create: true });
    try {
      await file.seek(state.logBytes, Deno.SeekMode.Start);
      await writeAll(file, record);
      await file.syncData();
      if (isNew) await syncDirectory(this.#filesDirectory);
    } catch (error) {
      await this.#undoPartialWrite(state, file, error);
      throw error;
    } finally {
      file.close();
    }
  }

  /** After a failed write, cuts the log back; if even that fails, the file stops taking writes. */
  async #undoPartialWrite(state: FileState, file: Deno.FsFile, cause: unknown): Promise<void> {
    try {
      await file.truncate(state.logBytes);
      await file.syncData();
    } catch {
      this.#broken.set(
        state.name,
        new Error(
          `Cannot append to file ${state.name} as an earlier write failed and could not be undone; restart the filewriter`,
          { cause },
        ),
      );
    }
  }

  async #newState(name: string): Promise<FileState> {
    return {
      name,
      path: await resolveLogPath(this.#filesDirectory, name),
      highestToken: 0,
      lock: "",
      size: 0,
      appends: 0,
      logBytes: 0,
      recent: new Map(),
    };
  }

  /** See {@link FileBackend.read}. */
  async read(file: string): Promise<Uint8Array<ArrayBuffer> | null> {
    validateFileName(file);
    this.#assertOpen();
    const state = this.#states.get(file);
    if (state === undefined) return null;
    return await this.#track(readContent(state.path, state.logBytes, state.size));
  }

  /** See {@link FileBackend.meta}. */
  meta(file: string): Promise<FileMeta | null> {
    try {
      validateFileName(file);
      this.#assertOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    const state = this.#states.get(file);
    if (state === undefined) return Promise.resolve(null);
    const { highestToken, lock, size, appends } = state;
    return Promise.resolve({ highestToken, lock, size, appends });
  }

  /** See {@link FileBackend.close}; waits for appends and reads in flight. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
    this.#lockFile.close();
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new Error(`Cannot use the file backend at ${this.#root} as it is closed`);
    }
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inFlight.add(promise);
    const forget = () => this.#inFlight.delete(promise);
    promise.then(forget, forget);
    return promise;
  }
}

/** Applies one record to a file's state (shared by append and the open-time scan). */
function applyRecord(
  state: FileState,
  meta: RecordMeta,
  dataLength: number,
  recordEnd: number,
  requestIdsMax: number,
): void {
  invariant(meta.offset === state.size, "record offset must equal the content size");
  state.highestToken = meta.token;
  state.lock = meta.lock;
  state.size += dataLength;
  state.appends += 1;
  state.logBytes = recordEnd;
  if (meta.requestId !== null) {
    state.recent.delete(meta.requestId);
    state.recent.set(meta.requestId, {
      offset: meta.offset,
      size: dataLength,
      token: meta.token,
      duplicate: false,
    });
    if (state.recent.size > requestIdsMax) {
      const oldest = state.recent.keys().next();
      if (oldest.done !== true) state.recent.delete(oldest.value);
    }
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await file.write(bytes.subarray(written));
  }
}

/** Reads exactly `target.length` bytes unless the file ends first; returns bytes read. */
async function readFull(file: Deno.FsFile, target: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < target.length) {
    const count = await file.read(target.subarray(filled));
    if (count === null) break;
    filled += count;
  }
  return filled;
}

async function syncDirectory(path: string): Promise<void> {
  const directory = await Deno.open(path, { read: true });
  try {
    await directory.sync();
  } finally {
    directory.close();
  }
}

/** Joins the log path of `name` and checks that it stays inside `filesDirectory`. */
async function resolveLogPath(filesDirectory: string, name: string): Promise<string> {
  validateFileName(name);
  const path = resolve(filesDirectory, await logFileName(name));
  invariant(
    dirname(path) === filesDirectory,
    `log path ${JSON.stringify(path)} must be directly inside ${filesDirectory}`,
  );
  return path;
}

async function ensureFormat(root: string): Promise<void> {
  const formatPath = join(root, "FORMAT");
  let text: string | null = null;
  try {
    text = await Deno.readTextFile(formatPath);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (text !== null) {
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch { /* reported below */ }
    const format = parsed as Partial<typeof formatContent> | null;
    if (format?.format !== formatContent.format || format.version !== formatContent.version) {
      throw new CorruptDataError(
        `Cannot open the data directory as its FORMAT file is not ${
          JSON.stringify(formatContent)
        }: received ${JSON.stringify(text.slice(0, 120))} in ${formatPath}`,
      );
    }
    return;
  }
  for await (const entry of Deno.readDir(root)) {
    if (entry.name !== "LOCK" && entry.name !== "FORMAT.tmp") {
      throw new CorruptDataError(
        `Cannot open the data directory as it has no FORMAT file but is not empty: received ${
          JSON.stringify(entry.name)
        } in ${root}`,
      );
    }
  }
  const temporary = join(root, "FORMAT.tmp");
  await Deno.writeTextFile(temporary, JSON.stringify(formatContent) + "\n");
  const file = await Deno.open(temporary, { read: true, write: true });
  try {
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(temporary, formatPath);
  await syncDirectory(root);
}

async function loadStates(
  filesDirectory: string,
  requestIdsMax: number,
  onWarning: ((message: string) => void) | undefined,
): Promise<Map<string, FileState>> {
  const states = new Map<string, FileState>();
  for await (const entry of Deno.readDir(filesDirectory)) {
    const path = join(filesDirectory, entry.name);
    if (!entry.isFile || !isLogFileName(entry.name)) {
      throw new CorruptDataError(
        `Cannot open the data directory as it holds an entry that is not a filewriter log: received ${path}`,
      );
    }
    const state = await scanLog(path, requestIdsMax, onWarning);
    if (state === null) continue;
    if (!(await logFileBelongsTo(entry.name, state.name))) {
      throw new CorruptDataError(
        `Cannot open the data directory as log ${path} holds records of file ${
          JSON.stringify(state.name)
        }`,
      );
    }
    if (states.size >= filesMax) {
      throw new CorruptDataError(
        `Cannot open the data directory as it holds more than ${filesMax} files: received ${path}`,
      );
    }
    states.set(state.name, state);
  }
  return states;
}

/**
 * Scans one log, truncating a torn tail. Returns null for a log without records.
 * @throws {CorruptDataError} on damage other than a torn tail.
 */
async function scanLog(
  path: string,
  requestIdsMax: number,
  onWarning: ((message: string) => void) | undefined,
): Promise<FileState | null> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    const length = (await file.stat()).size;
    let state: FileState | null = null;
    let position = 0;
    while (position < length) {
      const step = await readRecordAt(file, path, position, length);
      if (step === "torn") break;
      const { meta, dataLength, recordEnd } = step;
      state ??= {
        name: meta.file,
        path,
        highestToken: 0,
        lock: "",
        size: 0,
        appends: 0,
        logBytes: 0,
        recent: new Map(),
      };
      checkSequence(path, position, state, meta);
      applyRecord(state, meta, dataLength, recordEnd, requestIdsMax);
      position = recordEnd;
    }
    if (position < length) {
      onWarning?.(
        `truncated a torn record at byte ${position} of ${path} (${
          length - position
        } bytes, never acknowledged)`,
      );
      await file.truncate(position);
      await file.syncData();
    }
    return state;
  } finally {
    file.close();
  }
}

function checkSequence(path: string, position: number, state: FileState, meta: RecordMeta) {
  const problem = meta.file !== state.name
    ? `names file ${JSON.stringify(meta.file)} instead of ${JSON.stringify(state.name)}`
    : meta.offset !== state.size
    ? `has offset ${meta.offset} where the content size is ${state.size}`
    : meta.token < state.highestToken
    ? `has token ${meta.token} below the accepted ${state.highestToken}`
    : null;
  if (problem !== null) {
    throw new CorruptDataError(
      `Cannot open the data directory as the record at byte ${position} of ${path} ${problem}`,
    );
  }
}

type RecordStep = { meta: RecordMeta; dataLength: number; recordEnd: number } | "torn";

/**
 * Filesystem block size assumed for the power-loss signature: a block the kernel never wrote
 * reads back as zeros, and blocks are aligned to file offsets. 4096 bytes is the page size and
 * the usual block size of ext4, XFS and APFS; a filesystem with larger blocks still zeroes
 * whole 4096-byte-aligned parts, so the check stays sound there.
 */
const zeroBlockBytes = 4096;

/**
 * Reads and checks the record at `position`. "torn" means the rest of the log has one of the
 * shapes a crash leaves (see the module comment) and so holds one unacknowledged write.
 * @throws {CorruptDataError} when the rest of the log is not such a shape.
 */
async function readRecordAt(
  file: Deno.FsFile,
  path: string,
  position: number,
  length: number,
): Promise<RecordStep> {
  const remaining = length - position;
  await file.seek(position, Deno.SeekMode.Start);
  if (remaining < recordHeaderBytes) {
    const tail = new Uint8Array(remaining);
    await readFull(file, tail);
    if (isHeaderPrefix(tail) || hasZeroBlockPart(tail, position, 0, remaining)) return "torn";
    throw new CorruptDataError(
      `Cannot open the data directory as the last ${remaining} bytes of ${path}, from byte ${position}, are neither the start of a record nor zeros, so no crash wrote them; ${
        truncateAdvice(path, position)
      }`,
    );
  }
  const headerBytes = new Uint8Array(recordHeaderBytes);
  await readFull(file, headerBytes);
  const header = decodeHeader(headerBytes);
  if (header === null) {
    await checkGarbageTail(file, path, position, length);
    return "torn";
  }
  const recordBytes = recordHeaderBytes + header.metaLength + header.dataLength;
  const recordEnd = position + recordBytes;
  if (recordEnd > length) {
    await checkShortRecord(file, path, position, length, headerBytes);
    return "torn";
  }
  const record = new Uint8Array(recordBytes);
  record.set(headerBytes);
  await readFull(file, record.subarray(recordHeaderBytes));
  const meta = decodeBody(headerBytes, header, record.subarray(recordHeaderBytes));
  if (meta !== null) return { meta, dataLength: header.dataLength, recordEnd };
  if (recordEnd < length) {
    throw new CorruptDataError(
      `Cannot open the data directory as the record at byte ${position} of ${path} fails its checksum and is followed by more data`,
    );
  }
  // A complete record written by a crashed append can only fail its checksum because some of
  // its blocks never reached the disk; any other damage may hit an acknowledged record.
  if (hasZeroBlockPart(record, position, 0, recordBytes)) return "torn";
  throw new CorruptDataError(
    `Cannot open the data directory as the last record of ${path}, at byte ${position} (${recordBytes} bytes), is complete but fails its checksum without any zeroed ${zeroBlockBytes}-byte block, so it is damage a crash cannot cause and the record may have been acknowledged; ${
      truncateAdvice(path, position)
    }`,
  );
}

/**
 * After an unreadable header with at least a header's bytes left: a torn tail fits one record,
 * has no valid record after it, and its header is unreadable only because the block holding it
 * was never written (a written header is always valid).
 */
async function checkGarbageTail(
  file: Deno.FsFile,
  path: string,
  position: number,
  length: number,
): Promise<void> {
  const remaining = length - position;
  if (remaining > recordBytesMax) {
    throw new CorruptDataError(
      `Cannot open the data directory as ${path} has an unreadable record header at byte ${position} followed by ${remaining} bytes, more than one record`,
    );
  }
  await file.seek(position, Deno.SeekMode.Start);
  const tail = new Uint8Array(remaining);
  await readFull(file, tail);
  if (containsValidRecord(tail.subarray(1))) {
    throw new CorruptDataError(
      `Cannot open the data directory as ${path} has an unreadable record header at byte ${position} followed by valid records`,
    );
  }
  if (!hasZeroBlockPart(tail, position, 0, recordHeaderBytes)) {
    throw new CorruptDataError(
      `Cannot open the data directory as ${path} has an unreadable record header at byte ${position} that is not zeros (${remaining} bytes to the end), so no crash wrote it; ${
        truncateAdvice(path, position)
      }`,
    );
  }
}

/**
 * After a valid header whose record extends past the end of the log (a write cut short):
 * refuses when the bytes that are there form a valid record once a length field is taken
 * from the file size, since then it is a complete, possibly acknowledged record whose length
 * field was damaged, not a short write.
 */
async function checkShortRecord(
  file: Deno.FsFile,
  path: string,
  position: number,
  length: number,
  headerBytes: Uint8Array,
): Promise<void> {
  const remaining = length - position;
  const bodyBytes = remaining - recordHeaderBytes;
  await file.seek(position + recordHeaderBytes, Deno.SeekMode.Start);
  const body = new Uint8Array(bodyBytes);
  await readFull(file, body);
  const view = new DataView(headerBytes.buffer, headerBytes.byteOffset, recordHeaderBytes);
  const metaLength = view.getUint32(4, true);
  const dataLength = view.getUint32(8, true);
  const guesses = [
    { metaLength, dataLength: bodyBytes - metaLength },
    { metaLength: bodyBytes - dataLength, dataLength },
  ];
  for (const guess of guesses) {
    if (guess.metaLength < 0 || guess.dataLength < 0) continue;
    const repaired = headerBytes.slice();
    const repairedView = new DataView(repaired.buffer);
    repairedView.setUint32(4, guess.metaLength, true);
    repairedView.setUint32(8, guess.dataLength, true);
    const header = decodeHeader(repaired);
    if (header !== null && decodeBody(repaired, header, body) !== null) {
      throw new CorruptDataError(
        `Cannot open the data directory as the last record of ${path}, at byte ${position}, claims ${
          recordHeaderBytes + metaLength + dataLength
        } bytes but the ${remaining} bytes there form a valid record with another length, so its length field is damaged and the record may have been acknowledged; ${
          truncateAdvice(path, position)
        }`,
      );
    }
  }
}

/** Whether `bytes` (fewer than a header) can be the start of a record header. */
function isHeaderPrefix(bytes: Uint8Array): boolean {
  for (let index = 0; index < Math.min(bytes.length, 4); index += 1) {
    if (bytes[index] !== (recordMagic >>> (8 * index) & 0xff)) return false;
  }
  if (bytes.length < 8) return true;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const metaLength = view.getUint32(4, true);
  if (metaLength === 0 || metaLength > recordMetaBytesMax) return false;
  return bytes.length < 12 || view.getUint32(8, true) <= contentBytesMaxAbsolute;
}

/**
 * Whether some {@link zeroBlockBytes}-aligned block's part inside `tail` is all zeros and
 * overlaps `tail[from, to)`: the mark of a block that was never written before a power loss.
 * `tail` starts at byte `position` of the log.
 */
function hasZeroBlockPart(tail: Uint8Array, position: number, from: number, to: number): boolean {
  let start = 0;
  while (start < tail.length) {
    const end = Math.min(tail.length, start + zeroBlockBytes - (position + start) % zeroBlockBytes);
    if (start < to && end > from && isAllZero(tail.subarray(start, end))) return true;
    start = end;
  }
  return false;
}

function isAllZero(bytes: Uint8Array): boolean {
  for (let index = 0; index < bytes.length; index += 1) {
    if (bytes[index] !== 0) return false;
  }
  return true;
}

/** The manual way out of a refused tail, for the operator who accepts losing it. */
function truncateAdvice(path: string, position: number): string {
  const quoted = /^[A-Za-z0-9_.\/%~-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
  return `if you accept losing everything from byte ${position} on, truncate the file to ${position} bytes: truncate -s ${position} ${quoted}`;
}

/** Reads the content of a log up to its acknowledged length. */
async function readContent(
  path: string,
  logBytes: number,
  size: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const content = new Uint8Array(size);
  const file = await Deno.open(path, { read: true });
  try {
    let position = 0;
    const headerBytes = new Uint8Array(recordHeaderBytes);
    while (position < logBytes) {
      await file.seek(position, Deno.SeekMode.Start);
      invariant(await readFull(file, headerBytes) === recordHeaderBytes, "header in log");
      const header = decodeHeader(headerBytes);
      invariant(header !== null, `acknowledged record at ${position} of ${path} must be valid`);
      const metaBytes = new Uint8Array(header.metaLength);
      await readFull(file, metaBytes);
      const meta = JSON.parse(new TextDecoder().decode(metaBytes)) as RecordMeta;
      const target = content.subarray(meta.offset, meta.offset + header.dataLength);
      invariant(await readFull(file, target) === header.dataLength, "data in log");
      position += recordHeaderBytes + header.metaLength + header.dataLength;
    }
    return content;
  } finally {
    file.close();
  }
}
