/**
 * Shared argument handling of the client-side subcommands (`client`, `lock`, `status`):
 * where the servers are, and how errors print. Private to `src/cli/`.
 *
 * @module
 */
import { DlockError } from "../errors.ts";
import { limits } from "../limits.ts";
import { checkServerAddress, UsageError } from "./_usage.ts";

export { UsageError };

/**
 * Longest a signal (SIGTERM, SIGHUP, or SIGINT where it means quit) waits for the session
 * to close before the process exits anyway: a cluster that cannot be reached must not keep
 * a process that was told to stop alive; the session then expires after its TTL.
 */
export const closeOnSignalMsMax = 5_000;

/**
 * `work`'s outcome, or "late" once `boundMs` have passed (the work itself goes on).
 * @example `if (await withinMs(client.close(), 5_000) === "late") console.error("...")`
 */
export async function withinMs<T>(work: Promise<T>, boundMs: number): Promise<T | "late"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), boundMs);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The exit code of a process ended by `signal`, as a shell reports it: 128 + its number. */
export function exitCodeOfSignal(signal: Deno.Signal): number {
  const numbers: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGUSR1: 10,
    SIGSEGV: 11,
    SIGUSR2: 12,
    SIGPIPE: 13,
    SIGALRM: 14,
    SIGTERM: 15,
  };
  return 128 + (numbers[signal] ?? 1);
}

/** Servers tried when neither `--servers`, a positional SERVER nor DLOCK_SERVERS is given. */
export const defaultServers = "127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002";

/** Help text describing how servers are chosen. */
export const serversHelp =
  `  --servers host:port,...    servers to contact (any subset; the rest is discovered)
                             default: $DLOCK_SERVERS, else ${defaultServers}`;

/**
 * True when a positional argument was meant as a server address (or list) rather than a
 * name: it has a colon or a comma, or it is an IPv4 address, `localhost` or a bracketed IPv6
 * address without its port. Used to tell `dlock client 127.0.0.1 alice` (a forgotten port,
 * reported as such) from `dlock client alice`.
 */
export function looksLikeServers(text: string): boolean {
  return /[:,]/.test(text) || /^(\d{1,3}(\.\d{1,3}){3}|localhost|\[.*\])$/i.test(text);
}

/**
 * The server list: `--servers`, else a positional SERVER, else `DLOCK_SERVERS`, else the
 * default; each address checked by {@link checkServerAddress}.
 * @throws {UsageError} for a malformed list, or when both `--servers` and SERVER are given.
 */
export function resolveServers(flag: string | undefined, positional: string | undefined): string[] {
  if (flag !== undefined && positional !== undefined) {
    throw new UsageError(
      `Cannot use both --servers and a positional SERVER: received --servers ${flag} and ${positional}`,
    );
  }
  const fromEnvironment = flag === undefined && positional === undefined
    ? Deno.env.get("DLOCK_SERVERS")
    : undefined;
  const text = flag ?? positional ?? fromEnvironment ?? defaultServers;
  const role = fromEnvironment === undefined
    ? "a server address"
    : "a server address in DLOCK_SERVERS";
  const addresses = text.split(",").map((part) => part.trim()).filter((part) => part !== "");
  if (addresses.length === 0) {
    throw new UsageError(
      `Cannot use ${JSON.stringify(text)} as the servers: expected HOST:PORT[,HOST:PORT...]`,
    );
  }
  return addresses.map((address) => checkServerAddress(address, role));
}

/**
 * Parses a positive number of seconds (may be fractional) into whole milliseconds, at least 1.
 * Zero and negative values are refused rather than given a meaning of their own: `--timeout 0`
 * reads as "no time at all" to some and "no limit" to others.
 * @throws {UsageError} when `text` is not a number of seconds > 0.
 */
export function secondsToMs(text: string, option: string): number {
  const seconds = Number(text);
  const ms = Math.round(seconds * 1000);
  if (
    text.trim() === "" || !Number.isFinite(seconds) || ms < 1 || ms > limits.acquireTimeoutMsMax
  ) {
    throw new UsageError(
      `Cannot use ${option} as it must be a number of seconds > 0 (at most ${
        limits.acquireTimeoutMsMax / 1000
      }): received ${JSON.stringify(text)}`,
    );
  }
  return ms;
}

/**
 * Parses a session TTL in seconds (may be fractional) into whole milliseconds, within the
 * bounds the server accepts ({@link limits}.sessionTtlMsMin..sessionTtlMsMax), so a bad TTL
 * is a usage error in the unit the user typed rather than the server's refusal in ms.
 * @throws {UsageError} when `text` is not a number of seconds within the bounds.
 */
export function sessionTtlSecondsToMs(text: string, option: string): number {
  const ms = Math.round(Number(text) * 1000);
  if (
    text.trim() === "" || !Number.isFinite(ms) || ms < limits.sessionTtlMsMin ||
    ms > limits.sessionTtlMsMax
  ) {
    throw new UsageError(
      `Cannot use ${option} as it must be ${limits.sessionTtlMsMin / 1000}..${
        limits.sessionTtlMsMax / 1000
      } seconds: received ${JSON.stringify(text)}`,
    );
  }
  return ms;
}

/**
 * Checks a client name given on the command line: not empty, not only whitespace (the
 * server accepts an empty name, but nobody means to type one).
 * @throws {UsageError} for an empty or blank name.
 */
export function checkClientName(name: string): string {
  if (name.trim() === "") {
    throw new UsageError(
      `Cannot use ${
        JSON.stringify(name)
      } as the client name as it is empty or blank: expected a name such as worker-1`,
    );
  }
  return name;
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
