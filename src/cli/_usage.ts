/**
 * How every `dlock` subcommand reports a bad command line, and the checks of arguments that
 * several subcommands share. Private to `src/cli/` (and the bench's `dlock bench`).
 *
 * @module
 */

/**
 * Prints `dlock COMMAND: <the error's message>`, a blank line and the usage on stderr.
 * @returns 2, the exit code of a bad command line.
 */
export function usageFailure(command: string, usage: string, error: unknown): number {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`dlock ${command}: ${message}\n\n${usage}`);
  return 2;
}

/** A bad command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const portMax = 65_535;

/**
 * Checks one server address as typed on a command line: `HOST:PORT`, where HOST is a name,
 * an IPv4 address or a bracketed IPv6 address (`[::1]:5000`) and PORT is 1..65535. Checked
 * when the command line is parsed, so a typo is a usage error at once rather than a client
 * that retries an address it can never reach.
 * @param role what the address is for, as the message names it ("a server address", "SELF").
 * @returns `text` unchanged.
 * @throws {UsageError} with a message saying what is wrong and what was expected.
 */
export function checkServerAddress(text: string, role: string): string {
  const shown = /^\S+$/.test(text) ? text : JSON.stringify(text);
  const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:,/\[\]]+)(?::(\d*))?$/.exec(text);
  if (match !== null && (match[2] === undefined || match[2] === "")) {
    throw new UsageError(`Cannot use ${shown} as ${role} as it has no port: expected HOST:PORT`);
  }
  const port = Number(match?.[2]);
  if (match === null) {
    throw new UsageError(`Cannot use ${shown} as ${role}: expected HOST:PORT`);
  }
  if (!Number.isInteger(port) || port < 1 || port > portMax) {
    throw new UsageError(
      `Cannot use ${shown} as ${role} as its port is out of range: expected a port from 1 to ${portMax}`,
    );
  }
  return text;
}
