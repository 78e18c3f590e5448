/**
 * The Raft core: a pure, deterministic consensus state machine (no I/O). See
 * {@link RaftNode} for the caller's duties and {@link Ready} for the order in which a
 * Ready is carried out.
 *
 * @module
 */

export * from "./types.ts";
export { RaftNode, transferContext } from "./node.ts";
export { invariant, InvariantError } from "./invariant.ts";
