/**
 * How every `dlock` subcommand reports a bad command line, and the checks of arguments that
 * several subcommands share. Private to `src/cli/` (and the bench's `dlock bench`).
 *
 * @module
 */
import { serverAddressProblem } from "../client/mod.ts";

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

/**
 * Checks one server address as typed on a command line (see `serverAddressProblem`):
 * checked when the command line is parsed, so a typo is a usage error at once rather than
 * a client that retries an address it can never reach.
 * @param role what the address is for, as the message names it ("a server address", "SELF").
 * @returns `text` unchanged.
 * @throws {UsageError} with a message saying what is wrong and what was expected.
 */
export function checkServerAddress(text: string, role: string): string {
  const problem = serverAddressProblem(text, role);
  if (problem !== null) throw new UsageError(problem);
  return text;
}
