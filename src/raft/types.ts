/**
 * Types shared by the Raft core and everything that drives it (storage, transport,
 * server, simulator). This file is the contract between those modules: change it
 * only together with every caller.
 *
 * The core is a pure state machine in the style of etcd-io/raft: the caller feeds it
 * ticks, messages and proposals, and collects a {@link Ready} describing what to
 * persist, what to send and what to apply. Time is measured in ticks only.
 *
 * @module
 */

/** Identifies a server. In production this is its peer address, `host:port`. */
export type NodeId = string;

/** What a log entry carries. `noop` is appended by every new leader (Raft §8). */
export type EntryKind = "normal" | "noop" | "config";

/** One Raft log entry. `data` is opaque to the core. */
export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly kind: EntryKind;
  readonly data: Uint8Array;
}

/** State that must be on stable storage before any message that depends on it is sent. */
export interface HardState {
  readonly term: number;
  /** The candidate voted for in `term`, or null. */
  readonly vote: NodeId | null;
  /** Highest index known committed. Persisted so a restart re-applies only what is needed. */
  readonly commit: number;
}

/** Describes the log prefix a snapshot replaces. */
export interface SnapshotMeta {
  /** Index of the last entry the snapshot includes. */
  readonly index: number;
  /** Term of that entry. */
  readonly term: number;
  /** Cluster membership as of `index`. */
  readonly voters: readonly NodeId[];
}

/** A state-machine snapshot. `data` is opaque to the core. */
export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

/** Role of a node. `preCandidate` is the pre-vote phase (Raft thesis §9.6). */
export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/** Raft message kinds. Responses carry the suffix `Resp`. */
export type MessageType =
  | "preVote"
  | "preVoteResp"
  | "vote"
  | "voteResp"
  | "append"
  | "appendResp"
  | "heartbeat"
  | "heartbeatResp"
  | "snapshot"
  | "timeoutNow"
  | "readIndex"
  | "readIndexResp";

/**
 * One message between two cores. A flat shape (one optional field per purpose) so that
 * the transport can encode it as a single protobuf message.
 *
 * Field use by type:
 * - preVote/vote: `index`, `logTerm` = candidate's last log index and term;
 *   `context` = "transfer" when campaigning on a leadership transfer.
 * - preVoteResp/voteResp: `reject`.
 * - append: `index`, `logTerm` = index and term of the entry before `entries`;
 *   `entries`; `commit`.
 * - appendResp: `index` = highest index known to match (on success) or the rejected
 *   index; `reject`; `rejectHint` = follower's hint for fast back-tracking;
 *   `logTerm` = term at `rejectHint` on the follower (0 when unknown).
 * - heartbeat: `commit`; `context` = read-index round id, if any.
 * - heartbeatResp: `context` echoed.
 * - snapshot: `snapshot`.
 * - readIndex (follower to leader): `context` = request id.
 * - readIndexResp: `context`, `index` = read index; `reject` when the leader cannot serve.
 */
export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly index?: number;
  readonly logTerm?: number;
  readonly entries?: readonly Entry[];
  readonly commit?: number;
  readonly reject?: boolean;
  readonly rejectHint?: number;
  readonly snapshot?: Snapshot;
  readonly context?: string;
}

/** Volatile state that callers may want to observe (leader changes). */
export interface SoftState {
  readonly leader: NodeId | null;
  readonly role: Role;
  readonly term: number;
}

/** A linearizable read is safe once the applied index reaches `index`. */
export interface ReadState {
  readonly requestId: string;
  readonly index: number;
}

/**
 * What the caller must do, in this order (the server loop and simulator follow it):
 * 0. Send `messagesBeforePersist`. They may leave before, or while, steps 1 and 2 run
 *    (thesis §10.2.1: the leader writes to its disk in parallel with replicating).
 * 1. If `snapshot` is set, persist it, replacing the log up to its index. The core hands
 *    out a snapshot only when its log does not hold the snapshot's last entry (same
 *    index and term), so no persisted entry after the index is valid either: discard
 *    them too (Raft figure 13 keeps a suffix only when that entry matches).
 * 2. Persist `entries` (any persisted entries at or after `entries[0].index` are
 *    replaced) and `hardState`, atomically and durably.
 * 3. Send `messages`.
 * 4. If `snapshot` is set, restore the state machine from it; then apply
 *    `committedEntries` in order. Without a snapshot and a soft state change, the
 *    committed entries may be applied before steps 1 and 2 instead (they are durable on
 *    a majority already), and while the write runs, messages may be stepped and the
 *    entries they commit applied: see `RaftNode.takeCommittedEarly`.
 * 5. Answer `readStates` whose index is applied; fail `readFailures`.
 * 6. Call `advance()`: it tells the core that `entries` are durable, and only then does
 *    a leader count itself toward the quorum that commits them.
 *
 * Why step 0 is safe: a leader's own log only grows within its term, so its `append`
 * messages promise nothing about its disk; the leader counts itself toward a commit
 * quorum only for entries it has persisted (at `advance()`), and followers persist
 * before they acknowledge. If the leader crashes before its write completes, the
 * entries it lost may survive on followers, which is the ordinary case of a leader
 * crashing with uncommitted entries. Everything whose meaning depends on this node's
 * disk (votes and vote requests of a new term, responses to appends or heartbeats, read
 * answers, heartbeats, snapshots) stays in `messages`.
 */
export interface Ready {
  readonly softState?: SoftState;
  readonly hardState?: HardState;
  readonly snapshot?: Snapshot;
  readonly entries: readonly Entry[];
  /**
   * Only a leader's `append` messages of its current term, and only when this Ready
   * does not change the persisted term or vote. May be sent before `entries` and
   * `hardState` are durable (step 0). Empty otherwise.
   */
  readonly messagesBeforePersist: readonly Message[];
  /** Sent only after `snapshot`, `entries` and `hardState` are durable (step 3). */
  readonly messages: readonly Message[];
  readonly committedEntries: readonly Entry[];
  readonly readStates: readonly ReadState[];
  /** Read requests that cannot be served (no leader, leadership lost); retry elsewhere. */
  readonly readFailures: readonly string[];
}

/** Options of one core. All durations in ticks. */
export interface RaftOptions {
  readonly id: NodeId;
  /** Every voter, including `id`. Sizes 1, 3, 5, 7. */
  readonly voters: readonly NodeId[];
  /** Base election timeout; the actual one is random in [electionTicks, 2 * electionTicks). */
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Upper bounds of one append message. */
  readonly entriesPerAppendMax: number;
  readonly bytesPerAppendMax: number;
  /** Append messages in flight per follower before the leader waits for responses. */
  readonly inflightAppendsMax: number;
  /**
   * "safe": ReadIndex confirms leadership with a heartbeat round.
   * "lease": the leader serves reads without a round while its lease holds
   * (requires checkQuorum and a bound on clock drift, see `leaseDriftTicks`). The
   * caller must derive ticks from a monotonic clock and, after the process was paused
   * (GC, SIGSTOP, a slow disk), deliver every missed tick before stepping messages or
   * requesting reads; otherwise a paused leader serves stale reads (the simulator's
   * pause fault shows it). `campaign()` is refused while the node backs a lease.
   */
  readonly readMode: "safe" | "lease";
  /** Ticks subtracted from the lease for clock drift between nodes. */
  readonly leaseDriftTicks: number;
  /** Deterministic randomness in [0, 1), injected (no Math.random in the core). */
  readonly random: () => number;
}

/** What storage hands back to the core at start. */
export interface RestoredState {
  readonly hardState: HardState;
  /** Latest persisted snapshot, or null if none. */
  readonly snapshot: Snapshot | null;
  /** Persisted entries after the snapshot, contiguous, in order. */
  readonly entries: readonly Entry[];
}

/** Returned by propose. */
export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | {
    readonly ok: false;
    /**
     * notLeader: retry at `leader`; transferring: leadership is being handed over, retry
     * soon; tooLarge: the entry exceeds bytesPerAppendMax; overloaded: too many entries
     * are waiting to be committed (back off).
     */
    readonly reason: "notLeader" | "transferring" | "tooLarge" | "overloaded";
    readonly leader: NodeId | null;
  };

/** A snapshot of the core's state for observers and tests. */
export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId | null;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly voters: readonly NodeId[];
}
