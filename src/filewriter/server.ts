/**
 * Running the filewriter: opening a backend from its `--backend` spec, serving HTTP with
 * `Deno.serve`, and a small logger in text or JSON lines.
 *
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";
import { limits } from "../limits.ts";
import { contentBytesMaxAbsolute, type FileBackend } from "./backend.ts";
import { createFilewriterHandler, type FilewriterLogger } from "./http.ts";

/** Default `--backend`. */
export const defaultBackendSpec = "file:./data/filewriter";
/** Default `--listen`. */
export const defaultListen = "localhost:8080";

/**
 * Opens the backend named by `spec`: `file:DIR` or `mongodb://...` / `mongodb+srv://...`.
 * The MongoDB driver is only loaded for a MongoDB spec.
 * @throws {InvalidArgumentError} when the spec has another form.
 * @throws {CorruptDataError} (file backend) when the data directory is damaged.
 */
export async function openBackend(
  spec: string,
  options: { onWarning?: (message: string) => void } = {},
): Promise<FileBackend> {
  if (spec.startsWith("file:")) {
    const directory = spec.slice("file:".length);
    if (directory.length === 0) {
      throw new InvalidArgumentError(
        `Cannot open the backend as "file:" needs a directory: received ${JSON.stringify(spec)}`,
      );
    }
    const { LogFileBackend } = await import("./file_backend.ts");
    return await LogFileBackend.open({
      directory,
      ...(options.onWarning === undefined ? {} : { onWarning: options.onWarning }),
    });
  }
  if (spec.startsWith("mongodb://") || spec.startsWith("mongodb+srv://")) {
    const { MongoFileBackend } = await import("./mongodb_backend.ts");
    return await MongoFileBackend.open({ uri: spec });
  }
  throw new InvalidArgumentError(
    `Cannot open the backend as it must be file:DIR or mongodb://...: received ${
      JSON.stringify(spec)
    }`,
  );
}

/** Masks a password in a MongoDB URI for logs. */
export function redactBackendSpec(spec: string): string {
  return spec.replace(/^(mongodb(?:\+srv)?:\/\/[^:/@]*:)[^@/]*@/, "$1***@");
}

/**
 * Parses `host:port` (also `[v6]:port` and `:port`, meaning all interfaces).
 * @throws {InvalidArgumentError} when it does not have that form.
 */
export function parseListenAddress(text: string): { hostname: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):([0-9]{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (match === null || !Number.isInteger(port) || port > 65_535) {
    throw new InvalidArgumentError(
      `Cannot listen as the address must be host:port with a port from 0 to 65535: received ${
        JSON.stringify(text)
      }`,
    );
  }
  const hostname = match[1] ?? (match[2] === "" || match[2] === undefined ? "0.0.0.0" : match[2]);
  return { hostname, port };
}

/**
 * Checks `--max-content-bytes`: from 1 to {@link contentBytesMaxAbsolute}.
 * @throws {InvalidArgumentError} when out of range.
 */
export function validateMaxContentBytes(value: number): number {
  if (!Number.isSafeInteger(value) || value < 1 || value > contentBytesMaxAbsolute) {
    throw new InvalidArgumentError(
      `Cannot use --max-content-bytes as it must be an integer from 1 to ${contentBytesMaxAbsolute}: received ${value}`,
    );
  }
  return value;
}

/** Builds a logger writing one line per event to stderr, as text or JSON. */
export function createLogger(format: "text" | "json"): FilewriterLogger {
  return (level, message, fields = {}) => {
    const time = new Date().toISOString();
    if (format === "json") {
      console.error(JSON.stringify({ time, level, message, ...fields }));
      return;
    }
    const details = Object.entries(fields).map(([key, value]) => `${key}=${JSON.stringify(value)}`);
    console.error([time, level.toUpperCase(), message, ...details].join(" "));
  };
}

/** Options of {@link startFilewriter}. */
export type FilewriterServerOptions = {
  hostname: string;
  /** 0 picks a free port. */
  port: number;
  backend: FileBackend;
  /** Default {@link limits.fileContentBytesMaxDefault}. */
  maxContentBytes?: number;
  log?: FilewriterLogger;
};

/** A running filewriter HTTP server. */
export type FilewriterServer = {
  /** Where it listens (the real port when 0 was asked). */
  hostname: string;
  port: number;
  /** `http://host:port`. */
  url: string;
  /** Stops accepting, waits for requests in flight; the caller then closes the backend. */
  shutdown(): Promise<void>;
  /** Settles when the server has stopped. */
  finished: Promise<void>;
};

/**
 * Serves the filewriter API on `hostname:port`; resolves once listening.
 * @throws {Deno.errors.AddrInUse} when the port is taken.
 */
export async function startFilewriter(options: FilewriterServerOptions): Promise<FilewriterServer> {
  const maxContentBytes = validateMaxContentBytes(
    options.maxContentBytes ?? limits.fileContentBytesMaxDefault,
  );
  const handler = createFilewriterHandler({
    backend: options.backend,
    maxContentBytes,
    ...(options.log === undefined ? {} : { log: options.log }),
  });
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    onListen: (address) => resolve(address),
  }, handler);
  const address = await listening;
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return {
    hostname: address.hostname,
    port: address.port,
    url: `http://${host}:${address.port}`,
    shutdown: () => server.shutdown(),
    finished: server.finished,
  };
}
