/**
 * Programming-error assertion for the storage module (STYLE.md, convention 6): a broken
 * invariant means a caller violated the contract, so we crash instead of writing a store
 * that a later start would have to refuse.
 *
 * @module
 */

/**
 * Throws when `condition` is false.
 * @throws {Error} named "InvariantError" when the condition does not hold.
 */
export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) {
    const error = new Error(`Invariant violated in storage: ${message}`);
    error.name = "InvariantError";
    throw error;
  }
}
