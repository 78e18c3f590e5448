/**
 * A fresh LockNode with the real Raft core for tests (node_test.ts,
 * node_snapshot_test.ts): small ticks, pipelining, safe reads, an empty store. Private to
 * the tests of `src/server/`.
 */
import { LockStateMachine } from "../lock/mod.ts";
import { silentLogger } from "../log.ts";
import { RaftNode } from "../raft/mod.ts";
import type { Transport } from "../transport/types.ts";
import { type FilewriterAppender, LockNode, type LogStorage } from "./node.ts";

/** What differs between the tests' nodes. */
export interface TestNodeOptions {
  readonly self: string;
  readonly members: readonly string[];
  readonly storage: LogStorage;
  readonly transport: Transport;
  readonly random: () => number;
  readonly onFatal: (error: unknown) => void;
  readonly electionTicks?: number;
  /** The filewriter and its address (default: none). */
  readonly filewriter?: { appender: FilewriterAppender; address: string };
  readonly logEntriesBeforeSnapshot?: number;
  /** Wall clock (default Date.now). */
  readonly nowMs?: () => number;
  /** Shortest TTL granted (default: no raise). */
  readonly sessionTtlMsMin?: number;
}

export function testLockNode(options: TestNodeOptions): LockNode {
  const empty = { term: 0, vote: null, commit: 0 };
  return new LockNode({
    self: options.self,
    members: options.members,
    raft: new RaftNode({
      id: options.self,
      voters: options.members,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: 2,
      preVote: true,
      checkQuorum: true,
      entriesPerAppendMax: 64,
      bytesPerAppendMax: 1 << 20,
      inflightAppendsMax: 8,
      readMode: "safe",
      leaseDriftTicks: 0,
      random: options.random,
    }, { hardState: empty, snapshot: null, entries: [] }),
    storage: options.storage,
    transport: options.transport,
    machine: new LockStateMachine(),
    snapshotIndex: 0,
    restoredHardState: empty,
    filewriter: options.filewriter?.appender ?? null,
    filewriterAddress: options.filewriter?.address ?? "",
    logger: silentLogger,
    tickMs: 5,
    ...(options.logEntriesBeforeSnapshot === undefined
      ? {}
      : { logEntriesBeforeSnapshot: options.logEntriesBeforeSnapshot }),
    ...(options.nowMs === undefined ? {} : { nowMs: options.nowMs }),
    ...(options.sessionTtlMsMin === undefined ? {} : { sessionTtlMsMin: options.sessionTtlMsMin }),
    onFatal: options.onFatal,
  });
}
