/**
 * Options of the real Raft core for LockNode tests (node_test.ts, node_snapshot_test.ts):
 * small ticks, pipelining, safe reads. Private to the tests of `src/server/`.
 */
import type { RaftOptions } from "../raft/mod.ts";

export function testRaftOptions(
  id: string,
  voters: readonly string[],
  random: () => number,
  electionTicks = 10,
): RaftOptions {
  return {
    id,
    voters,
    electionTicks,
    heartbeatTicks: 2,
    preVote: true,
    checkQuorum: true,
    entriesPerAppendMax: 64,
    bytesPerAppendMax: 1 << 20,
    inflightAppendsMax: 8,
    readMode: "safe",
    leaseDriftTicks: 0,
    random,
  };
}
