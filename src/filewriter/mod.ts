/**
 * The fenced storage service (`dlock filewriter`): public surface.
 *
 * - {@link FilewriterClient}: HTTP client (used by lock servers and applications).
 * - {@link startFilewriter} / {@link openBackend}: run the service in-process.
 * - {@link FileBackend}: the backend contract; `file:DIR` ({@link LogFileBackend}) and
 *   `mongodb://` (`MongoFileBackend` in `mongodb_backend.ts`, loaded on demand).
 *
 * @module
 */
export * from "./backend.ts";
export * from "./client.ts";
export { CorruptDataError, DataDirectoryBusyError, LogFileBackend } from "./file_backend.ts";
export type { LogFileBackendOptions } from "./file_backend.ts";
export { createFilewriterHandler } from "./http.ts";
export type { FilewriterHandlerOptions, FilewriterLogger } from "./http.ts";
export {
  createLogger,
  defaultBackendSpec,
  defaultListen,
  openBackend,
  parseListenAddress,
  redactBackendSpec,
  startFilewriter,
  validateMaxContentBytes,
} from "./server.ts";
export type { FilewriterServer, FilewriterServerOptions } from "./server.ts";
export { fileNameProblem, validateFileName } from "./validate.ts";
