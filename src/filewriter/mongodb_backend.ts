/**
 * The MongoDB backend (`--backend mongodb://...`) through the official driver.
 *
 * Two collections (names prefixed by `collectionPrefix`, default `filewriter_`):
 * ```
 * files:  { _id: name, highest_token, lock, size, appends,
 *           parts:   [{ chunk: ObjectId, offset, size }],      // the content, in order
 *           results: [{ id, offset, size, token }] }           // the last N request ids
 * chunks: { _id: ObjectId, file, data: BinData, created_at }
 * ```
 *
 * An append first stores its data as a new chunk (invisible: nothing refers to it), then
 * makes it part of the file with ONE conditional `findOneAndUpdate` on the file document:
 * the filter holds the fence (`highest_token < token`, or equal with the same lock) and the
 * dedupe check (`results.id != request id`); the pipeline update sets the token, appends the
 * part at offset `$size`, bumps size and appends, and records the request id (sliced to the
 * last N). So the fence check, the append and the request-id record are one atomic write.
 * When nothing matches, the file document is read to tell a duplicate (return the original
 * result) from a stale token. Every write uses `{w: "majority", j: true}`; reads use read
 * concern "majority", so an acknowledged append survives the loss of a minority.
 *
 * Chunks of refused appends are deleted at once; a crash between the two writes can leave
 * an orphan chunk, which no reader ever sees (readers follow `parts` only).
 *
 * Bounds: a file document holds at most {@link mongoAppendsPerFileMax} parts (the 16 MiB
 * BSON limit), request ids per file as for every backend.
 *
 * @module
 */
import {
  Binary,
  type Collection,
  type Db,
  type Document,
  type Filter,
  MongoClient,
  MongoServerError,
  ObjectId,
} from "mongodb";
import { ResourceExhaustedError } from "../errors.ts";
import {
  type AppendOutcome,
  type AppendRequest,
  type AppendResult,
  type FileBackend,
  type FileMeta,
  requestIdsPerFileMax,
} from "./backend.ts";
import { invariant } from "./_invariant.ts";
import { validateAppendRequest, validateFileName } from "./validate.ts";

/** Appends one file document can reference (keeps it under MongoDB's 16 MiB limit). */
export const mongoAppendsPerFileMax = 150_000;

const updateAttemptsMax = 16;
const partsPerReadBatch = 500;
const duplicateKeyCode = 11000;

type Part = { chunk: ObjectId; offset: number; size: number };
type RememberedResult = { id: string; offset: number; size: number; token: number };

/** The document of one file. */
type FileDocument = {
  _id: string;
  highest_token: number;
  lock: string;
  size: number;
  appends: number;
  parts: Part[];
  results: RememberedResult[];
};

type ChunkDocument = { _id: ObjectId; file: string; data: Binary; created_at: Date };

/** Options of {@link MongoFileBackend.open}. */
export type MongoFileBackendOptions = {
  /** A `mongodb://` or `mongodb+srv://` connection string. */
  uri: string;
  /** Database; default: the one named in the URI, else "dlock". */
  database?: string;
  /** Prefix of the two collection names (default "filewriter_"). */
  collectionPrefix?: string;
  /** Request ids remembered per file (default {@link requestIdsPerFileMax}). */
  requestIdsPerFileMax?: number;
  /** Server selection timeout (default 10 s). */
  serverSelectionTimeoutMs?: number;
};

/** Returns the database named in a MongoDB URI's path, or null. */
export function databaseFromUri(uri: string): string | null {
  const match = /^mongodb(?:\+srv)?:\/\/[^/?]*\/([^?]+)/.exec(uri);
  return match?.[1] === undefined ? null : decodeURIComponent(match[1]);
}

/** The `mongodb://` backend. Create with {@link MongoFileBackend.open}. */
export class MongoFileBackend implements FileBackend {
  readonly #client: MongoClient;
  readonly #database: Db;
  readonly #files: Collection<FileDocument>;
  readonly #chunks: Collection<ChunkDocument>;
  readonly #requestIdsMax: number;
  #closed = false;

  private constructor(client: MongoClient, database: Db, prefix: string, requestIdsMax: number) {
    const concerns = {
      writeConcern: { w: "majority" as const, journal: true },
      readConcern: { level: "majority" as const },
    };
    this.#client = client;
    this.#database = database;
    this.#files = database.collection<FileDocument>(`${prefix}files`, concerns);
    this.#chunks = database.collection<ChunkDocument>(`${prefix}chunks`, concerns);
    this.#requestIdsMax = requestIdsMax;
  }

  /**
   * Connects and checks the server answers.
   * @throws {Error} (from the driver) when no server is reachable.
   */
  static async open(options: MongoFileBackendOptions): Promise<MongoFileBackend> {
    const requestIdsMax = options.requestIdsPerFileMax ?? requestIdsPerFileMax;
    invariant(requestIdsMax >= 1, "requestIdsPerFileMax must be at least 1");
    // An explicit option beats the URI's, so the default applies only when the URI has none.
    const uriSetsTimeout = /[?&]serverSelectionTimeoutMS=/i.test(options.uri);
    const timeoutMs = options.serverSelectionTimeoutMs ?? (uriSetsTimeout ? undefined : 10_000);
    const client = new MongoClient(options.uri, {
      appName: "dlock-filewriter",
      ...(timeoutMs === undefined ? {} : { serverSelectionTimeoutMS: timeoutMs }),
    });
    try {
      await client.connect();
      const database = client.db(options.database ?? databaseFromUri(options.uri) ?? "dlock");
      await database.command({ ping: 1 });
      return new MongoFileBackend(
        client,
        database,
        options.collectionPrefix ?? "filewriter_",
        requestIdsMax,
      );
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  /** The database in use (tests drop it). */
  get database(): Db {
    return this.#database;
  }

  /** See {@link FileBackend.append}. */
  async append(request: AppendRequest): Promise<AppendOutcome> {
    validateAppendRequest(request);
    this.#assertOpen();
    const early = await this.#refusal(request);
    if (early !== null) return early;
    const chunk = new ObjectId();
    await this.#chunks.insertOne({
      _id: chunk,
      file: request.file,
      data: new Binary(request.data),
      created_at: new Date(),
    });
    const outcome = await this.#appendChunk(request, chunk);
    if (outcome.status === "stale" || outcome.result.duplicate) {
      // Known to be unreferenced: drop it, best effort. After an error the outcome of the
      // update is unknown, so the chunk is kept (at worst an orphan nobody reads).
      await this.#chunks.deleteOne({ _id: chunk }).catch(() => undefined);
    }
    return outcome;
  }

  async #appendChunk(request: AppendRequest, chunk: ObjectId): Promise<AppendOutcome> {
    for (let attempt = 0; attempt < updateAttemptsMax; attempt += 1) {
      // Only a race on the document's creation brings us back here; let it settle.
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, attempt * 5));
      const size = await this.#conditionalAppend(request, chunk);
      if (size !== null) {
        const result: AppendResult = {
          offset: size - request.data.length,
          size: request.data.length,
          token: request.token,
          duplicate: false,
        };
        return { status: "ok", result };
      }
      const refusal = await this.#refusal(request);
      if (refusal !== null) return refusal;
    }
    throw new Error(
      `Cannot append to file ${request.file} as its document changed under ${updateAttemptsMax} attempts in a row`,
    );
  }

  /**
   * The one conditional update. Returns the file size after the append, or null when the
   * filter did not match (the document exists but the fence or dedupe refuses, or a
   * concurrent first append created it).
   */
  async #conditionalAppend(request: AppendRequest, chunk: ObjectId): Promise<number | null> {
    try {
      const after = await this.#files.findOneAndUpdate(
        appendFilter(request),
        appendPipeline(request, chunk, this.#requestIdsMax),
        { upsert: true, returnDocument: "after", projection: { size: 1 } },
      );
      invariant(after !== null, "an upsert with returnDocument 'after' returns the document");
      return after.size;
    } catch (error) {
      if (error instanceof MongoServerError && error.code === duplicateKeyCode) return null;
      throw error;
    }
  }

  /** Reads the file document and says why `request` cannot be applied, if it cannot. */
  async #refusal(request: AppendRequest): Promise<AppendOutcome | null> {
    const projection: Document = { highest_token: 1, lock: 1, appends: 1 };
    if (request.requestId !== null) {
      projection.results = { $elemMatch: { id: request.requestId } };
    }
    const document = await this.#files.findOne({ _id: request.file }, { projection });
    if (document === null) return null;
    const original = document.results?.[0];
    if (request.requestId !== null && original !== undefined) {
      invariant(original.id === request.requestId, "$elemMatch returns the matching result");
      const { offset, size, token } = original;
      return { status: "ok", result: { offset, size, token, duplicate: true } };
    }
    if (
      request.token < document.highest_token ||
      (request.token === document.highest_token && request.lock !== document.lock)
    ) {
      return { status: "stale", highestToken: document.highest_token, lock: document.lock };
    }
    if (document.appends >= mongoAppendsPerFileMax) {
      throw new ResourceExhaustedError(
        `Cannot append to file ${request.file} as it already holds ${mongoAppendsPerFileMax} appends, the most one MongoDB document can reference: received one more`,
      );
    }
    return null;
  }

  /** See {@link FileBackend.read}. */
  async read(file: string): Promise<Uint8Array<ArrayBuffer> | null> {
    validateFileName(file);
    this.#assertOpen();
    const document = await this.#files.findOne(
      { _id: file },
      { projection: { parts: 1, size: 1 } },
    );
    if (document === null) return null;
    const content = new Uint8Array(document.size);
    for (let start = 0; start < document.parts.length; start += partsPerReadBatch) {
      const parts = document.parts.slice(start, start + partsPerReadBatch);
      const chunks = await this.#chunks.find({ _id: { $in: parts.map((part) => part.chunk) } })
        .toArray();
      const byId = new Map(chunks.map((chunk) => [chunk._id.toHexString(), chunk.data]));
      for (const part of parts) {
        const data = byId.get(part.chunk.toHexString())?.value();
        invariant(data !== undefined && data.length === part.size, "every part has its chunk");
        content.set(data, part.offset);
      }
    }
    return content;
  }

  /** See {@link FileBackend.meta}. */
  async meta(file: string): Promise<FileMeta | null> {
    validateFileName(file);
    this.#assertOpen();
    const document = await this.#files.findOne(
      { _id: file },
      { projection: { highest_token: 1, lock: 1, size: 1, appends: 1 } },
    );
    if (document === null) return null;
    return {
      highestToken: document.highest_token,
      lock: document.lock,
      size: document.size,
      appends: document.appends,
    };
  }

  /** See {@link FileBackend.close}. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#client.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error("Cannot use the MongoDB backend as it is closed");
  }
}

/** The fence and dedupe conditions of the conditional update. */
function appendFilter(request: AppendRequest): Filter<FileDocument> {
  const filter: Document = {
    _id: request.file,
    $or: [
      { highest_token: { $lt: request.token } },
      { highest_token: request.token, lock: request.lock },
    ],
    appends: { $lt: mongoAppendsPerFileMax },
  };
  if (request.requestId !== null) filter["results.id"] = { $ne: request.requestId };
  return filter as Filter<FileDocument>;
}

/**
 * The update, as an aggregation pipeline so the new part can take the current `$size` as
 * its offset. Every expression reads the document as it was before the update; values
 * from the request are wrapped in `$literal` so a lock named "$x" stays a string.
 */
function appendPipeline(
  request: AppendRequest,
  chunk: ObjectId,
  requestIdsMax: number,
): Document[] {
  const offset = { $ifNull: ["$size", 0] };
  const size = request.data.length;
  const part = { chunk: { $literal: chunk }, offset, size: { $literal: size } };
  const results = { $ifNull: ["$results", []] };
  const remembered = request.requestId === null ? results : {
    $slice: [
      {
        $concatArrays: [results, [{
          id: { $literal: request.requestId },
          offset,
          size: { $literal: size },
          token: { $literal: request.token },
        }]],
      },
      -requestIdsMax,
    ],
  };
  return [{
    $set: {
      highest_token: { $literal: request.token },
      lock: { $literal: request.lock },
      size: { $add: [offset, size] },
      appends: { $add: [{ $ifNull: ["$appends", 0] }, 1] },
      parts: { $concatArrays: [{ $ifNull: ["$parts", []] }, [part]] },
      results: remembered,
    },
  }];
}
