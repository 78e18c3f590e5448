/**
 * The error of the storage module.
 *
 * @module
 */

/**
 * The Raft store cannot be used: it belongs to another cluster or server, it was written
 * by an unknown format version, it is corrupt or unreadable, another process holds it,
 * or a write to it failed. The message says what is wrong and where (path, key, index).
 *
 * A server that gets this error at start must not start (and must not reset the store):
 * an operator has to look at the data directory.
 */
export class StorageError extends Error {
  /** The data directory of the store concerned. */
  readonly dataDir: string;
  constructor(dataDir: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StorageError";
    this.dataDir = dataDir;
  }
}
