/**
 * The cluster id: derived from the sorted member list, so every server of a cluster
 * computes the same id without configuration, and a store or a peer of a cluster with
 * other members is recognised as foreign.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** `dlock-` and 16 hex digits of SHA-256 over the sorted, de-duplicated members. */
export function clusterIdOf(members: readonly string[]): string {
  const sorted = [...new Set(members)].sort();
  const digest = createHash("sha256").update(sorted.join("\n")).digest("hex");
  return `dlock-${digest.slice(0, 16)}`;
}
