/**
 * Programming-error checks for the filewriter (STYLE.md, convention 6).
 * @module
 */

/**
 * Crashes with `message` when `condition` is false: a broken invariant is a bug, and
 * limping on could corrupt stored data.
 * @throws {Error} when the condition does not hold.
 */
export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`invariant failed: ${message}`);
}
