/**
 * Assertions for programmer errors (STYLE.md, convention 6). A broken invariant in the
 * Raft core means the node can no longer be trusted, so it crashes instead of limping on.
 *
 * @module
 */

/** Thrown by {@link invariant}; never caught by the core. */
export class InvariantError extends Error {
  constructor(message: string) {
    super(`Raft invariant violated: ${message}`);
    this.name = "InvariantError";
  }
}

/**
 * Throws {@link InvariantError} when `condition` is false.
 *
 * @example
 * ```ts
 * import { invariant } from "./invariant.ts";
 * invariant(1 + 1 === 2, "arithmetic works");
 * ```
 * @throws {InvariantError} when the condition does not hold.
 */
export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
