/**
 * Programming-error assertion for the lock module (STYLE.md, convention 6): a broken
 * invariant crashes with a message instead of letting replicas limp on and diverge.
 *
 * @module
 */

/**
 * Throws when `condition` is false.
 * @throws {Error} always when the condition does not hold.
 */
export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`Invariant violated in lock state machine: ${message}`);
}
