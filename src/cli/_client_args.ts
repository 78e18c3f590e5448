/**
 * Shared argument handling of the client-side subcommands (`client`, `lock`, `status`):
 * where the servers are, and how errors print. Private to `src/cli/`.
 *
 * @module
 */
import { DlockError } from "../errors.ts";

/** Servers tried when neither `--servers`, a positional SERVER nor DLOCK_SERVERS is given. */
export const defaultServers = "127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002";

/** Help text describing how servers are chosen. */
export const serversHelp =
  `  --servers host:port,...    servers to contact (any subset; the rest is discovered)
                             default: $DLOCK_SERVERS, else ${defaultServers}`;

const addressPattern = /^(\[[0-9a-fA-F:.]+\]|[^\s:,/]+):\d{1,5}$/;

/** True when `text` is one address or a comma-separated list of addresses. */
export function looksLikeServers(text: string): boolean {
  const parts = text.split(",").map((part) => part.trim()).filter((part) => part !== "");
  return parts.length > 0 && parts.every((part) => addressPattern.test(part));
}

/**
 * The server list: `--servers`, else a positional SERVER, else `DLOCK_SERVERS`, else
 * the default. Throws a usage error for a malformed list.
 */
export function resolveServers(flag: string | undefined, positional: string | undefined): string[] {
  const text = flag ?? positional ?? Deno.env.get("DLOCK_SERVERS") ?? defaultServers;
  if (!looksLikeServers(text)) {
    throw new UsageError(
      `servers must be host:port[,host:port...]: received ${JSON.stringify(text)}`,
    );
  }
  return text.split(",").map((part) => part.trim()).filter((part) => part !== "");
}

/** A bad command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parses a number of seconds (may be fractional) into whole milliseconds. */
export function secondsToMs(text: string, option: string): number {
  const seconds = Number(text);
  if (text.trim() === "" || !Number.isFinite(seconds) || seconds < 0) {
    throw new UsageError(
      `${option} must be a number of seconds >= 0: received ${JSON.stringify(text)}`,
    );
  }
  return Math.round(seconds * 1000);
}

/** One line describing an error for a person: the reason (when typed) and the message. */
export function describeError(error: unknown): string {
  if (error instanceof DlockError) return `${error.reason}: ${oneLine(error.message)}`;
  if (error instanceof Error) {
    return error.name === "AbortError" ? "cancelled" : oneLine(error.message);
  }
  return oneLine(String(error));
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
