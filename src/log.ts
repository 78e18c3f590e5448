/**
 * A tiny leveled logger. Readable text by default (`10:15:00.123 INFO  message key=value`),
 * or one JSON object per line with format "json" (`{"time":…,"level":…,"msg":…,…}`).
 * Writes to stderr so that stdout stays free for command output.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const log = createLogger({ format: "text", level: "info" });
 * log.info("serving", { address: "127.0.0.1:5000" });
 * const raftLog = log.child({ component: "raft" });
 * raftLog.debug("tick");
 * ```
 *
 * @module
 */

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** Output formats. */
export type LogFormat = "text" | "json";
/** Structured fields attached to one log line. */
export type LogFields = Readonly<Record<string, unknown>>;

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Every level, for argument validation. */
export const logLevels: readonly LogLevel[] = ["debug", "info", "warn", "error"];
/** Every format, for argument validation. */
export const logFormats: readonly LogFormat[] = ["text", "json"];

/** A logger. Lines below the configured level cost one comparison. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** True when lines at `level` are written (to skip building expensive fields). */
  enabled(level: LogLevel): boolean;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  readonly format?: LogFormat;
  readonly level?: LogLevel;
  /** Where lines go; defaults to stderr. Tests inject a collector. */
  readonly write?: (line: string) => void;
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // A closed stderr (parent gone) must not crash the server.
  }
}

/** Creates a logger; see the module documentation. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return new LeveledLogger(
    options.format ?? "text",
    levelRank[options.level ?? "info"],
    options.write ?? writeStderr,
    {},
  );
}

class LeveledLogger implements Logger {
  constructor(
    private readonly format: LogFormat,
    private readonly minimumRank: number,
    private readonly write: (line: string) => void,
    private readonly baseFields: LogFields,
  ) {}

  debug(message: string, fields?: LogFields): void {
    this.log("debug", message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.log("info", message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    this.log("warn", message, fields);
  }
  error(message: string, fields?: LogFields): void {
    this.log("error", message, fields);
  }
  enabled(level: LogLevel): boolean {
    return levelRank[level] >= this.minimumRank;
  }
  child(fields: LogFields): Logger {
    return new LeveledLogger(this.format, this.minimumRank, this.write, {
      ...this.baseFields,
      ...fields,
    });
  }

  private log(level: LogLevel, message: string, fields: LogFields | undefined): void {
    if (levelRank[level] < this.minimumRank) return;
    const all = fields === undefined ? this.baseFields : { ...this.baseFields, ...fields };
    const time = new Date();
    this.write(
      this.format === "json"
        ? formatJson(time, level, message, all)
        : formatText(time, level, message, all),
    );
  }
}

/** A logger that writes nothing (tests, library use). */
export const silentLogger: Logger = createLogger({ level: "error", write: () => {} });

/** Formats one JSON line. Errors become their message; bigints become strings. */
export function formatJson(
  time: Date,
  level: LogLevel,
  message: string,
  fields: LogFields,
): string {
  const record: Record<string, unknown> = { time: time.toISOString(), level, msg: message };
  for (const [key, value] of Object.entries(fields)) record[key] = plain(value);
  return JSON.stringify(record);
}

/** Formats one text line: time, level, message, then `key=value` pairs. */
export function formatText(
  time: Date,
  level: LogLevel,
  message: string,
  fields: LogFields,
): string {
  const clock = time.toISOString().slice(11, 23);
  let line = `${clock} ${level.toUpperCase().padEnd(5)} ${message}`;
  for (const [key, value] of Object.entries(fields)) line += ` ${key}=${textValue(value)}`;
  return line;
}

function plain(value: unknown): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === "bigint") return value.toString();
  return value;
}

function textValue(value: unknown): string {
  const simple = plain(value);
  if (typeof simple === "string") {
    return /^[^\s"=]+$/.test(simple) ? simple : JSON.stringify(simple);
  }
  if (simple === undefined) return "undefined";
  try {
    return JSON.stringify(simple) ?? String(simple);
  } catch {
    return String(simple);
  }
}
