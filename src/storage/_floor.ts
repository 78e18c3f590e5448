/**
 * The floor file (`<dataDir>/raft.floor`): a lower bound of what this server's store had
 * made durable, written beside Deno KV so that a store that went back in time is refused
 * at start instead of served.
 *
 * Why: SQLite (under Deno KV) cannot tell a WAL that was truncated or damaged after its
 * commits were fsynced from one torn by a crash before them; it opens the last intact
 * commit, an older state, without an error. A Raft server that restarts with an older
 * term, a forgotten vote or a log shorter than entries it acknowledged breaks Raft's
 * safety argument (it can vote twice in a term, or help elect a leader without committed
 * entries). The floor lets `KvLogStorage.open` notice the cases a crash cannot produce.
 *
 * What it holds: term, vote and commit index of a save that had already resolved (so was
 * durable) when the floor was written. It is written at most about once a second after
 * a save, and on close, to a temporary file renamed over the old one. It may lag the
 * store by a second (a truncation that only loses that last second is not noticed), but
 * it is never ahead of what the store had made durable, so a sound store is never
 * refused.
 *
 * The checks, each true of every sound store (terms never decrease; a vote is never
 * changed within its term; committed entries are never removed, and a compaction keeps
 * the last index at or above the snapshot's):
 * - the store's term is at least the floor's;
 * - in the floor's term, the store has the floor's vote;
 * - the store's last index is at least the floor's commit index;
 * - an empty store (no format stamp) has no floor above zero.
 *
 * @module
 */

import { join } from "node:path";
import type { HardState } from "../raft/types.ts";
import { StorageError } from "./storage_error.ts";

/** Name of the floor file inside the data directory. */
export const floorFileName = "raft.floor";

/** Minimum time between two floors written after saves. */
export const floorIntervalMs = 1000;

/** A lower bound of the store's durable state. */
export interface Floor {
  readonly clusterId: string;
  readonly nodeId: string;
  readonly term: number;
  readonly vote: string | null;
  readonly commit: number;
}

/** What the store holds at open, to compare against the floor. */
export interface StoreState {
  readonly hardState: HardState;
  readonly lastIndex: number;
}

/**
 * Reads the floor, or null when there is none or it cannot be read (a power loss can
 * leave it empty, as it is written without fsync; see {@link writeFloor}).
 */
export async function readFloor(dataDir: string): Promise<Floor | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dataDir, floorFileName));
  } catch {
    return null;
  }
  return parseFloor(text);
}

function parseFloor(text: string): Floor | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const { clusterId, nodeId, term, vote, commit } = value as Record<string, unknown>;
  if (typeof clusterId !== "string" || typeof nodeId !== "string") return null;
  if (!isCount(term) || !isCount(commit)) return null;
  if (vote !== null && typeof vote !== "string") return null;
  return { clusterId, nodeId, term, vote, commit };
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Refuses a store that is behind its floor (see the module doc); `store` null means the
 * store is empty (being created).
 * @throws {StorageError} saying what went back and by how much.
 */
export function checkFloor(
  dataDir: string,
  floor: Floor,
  expected: { clusterId: string; nodeId: string },
  store: StoreState | null,
): void {
  const path = join(dataDir, floorFileName);
  if (floor.clusterId !== expected.clusterId || floor.nodeId !== expected.nodeId) {
    throw new StorageError(
      dataDir,
      `Cannot open the Raft store as ${path} belongs to server ${floor.nodeId} of cluster ${floor.clusterId}, not to server ${expected.nodeId} of cluster ${expected.clusterId}`,
    );
  }
  const problem = floorProblem(floor, store);
  if (problem === null) return;
  throw new StorageError(
    dataDir,
    `Cannot open the Raft store as it is behind what this server had saved: ${problem}. ` +
      `Its files were truncated, damaged, replaced or restored from a backup, or the disk ` +
      `lost writes it had acknowledged; serving from it could break Raft's safety. ` +
      `Restore this data directory; if it is lost for good, see "A member that lost its ` +
      `data directory" in the README before starting this member empty. The floor is ${path}.`,
  );
}

function floorProblem(floor: Floor, store: StoreState | null): string | null {
  if (store === null) {
    return floor.term > 0 || floor.commit > 0
      ? `the store is empty, but it had reached term ${floor.term} and commit index ${floor.commit}`
      : null;
  }
  const { hardState, lastIndex } = store;
  if (hardState.term < floor.term) {
    return `its term is ${hardState.term}, but it had reached term ${floor.term}`;
  }
  if (hardState.term === floor.term && floor.vote !== null && hardState.vote !== floor.vote) {
    return `in term ${floor.term} it voted for ${floor.vote}, but the store records ${
      hardState.vote === null ? "no vote" : `a vote for ${hardState.vote}`
    }`;
  }
  if (lastIndex < floor.commit) {
    return `its log ends at index ${lastIndex}, but entries up to ${floor.commit} were committed`;
  }
  return null;
}

/**
 * Writes the floor: a temporary file renamed over the old floor. Blocking, and without
 * fsync (about 0.1 ms, once a second): after a power loss the file may be the previous
 * floor or unreadable, both of which are safe (an unreadable floor counts as none).
 */
export function writeFloor(dataDir: string, floor: Floor): void {
  const path = join(dataDir, floorFileName);
  const temporary = `${path}.tmp`;
  Deno.writeTextFileSync(temporary, JSON.stringify(floor) + "\n");
  Deno.renameSync(temporary, path);
}
