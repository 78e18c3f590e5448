/**
 * How every `dlock` subcommand reports a bad command line. Private to `src/cli/` (and the
 * bench's `dlock bench`).
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
