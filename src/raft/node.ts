/**
 * The Raft core: a pure, deterministic state machine in the style of etcd-io/raft.
 *
 * Inputs: {@link RaftNode.tick}, {@link RaftNode.step} (a message from a peer),
 * {@link RaftNode.propose}, {@link RaftNode.readIndex}, {@link RaftNode.transferLeadership},
 * {@link RaftNode.campaign}, {@link RaftNode.compact}. Output: a {@link Ready} describing
 * what to persist, send and apply, collected with {@link RaftNode.ready} and acknowledged
 * with {@link RaftNode.advance}. No I/O, no clocks, no global randomness.
 *
 * References in comments: "§" = the Raft paper (Ongaro and Ousterhout, 2014) or the
 * thesis (Ongaro, 2014, "thesis §").
 *
 * @module
 */

import type {
  Entry,
  EntryKind,
  HardState,
  Message,
  MessageType,
  NodeId,
  ProposeResult,
  RaftOptions,
  RaftStatus,
  ReadState,
  Ready,
  RestoredState,
  Role,
  Snapshot,
  SoftState,
} from "./types.ts";
import { invariant } from "./invariant.ts";
import { RaftLog } from "./log.ts";
import { Progress } from "./progress.ts";

/** `context` of vote requests sent on a leadership transfer (they bypass leases). */
export const transferContext = "transfer";

/** Committed entries handed out in one Ready at most (the rest follow in the next). */
const committedEntriesPerReadyMax = 4096;
/** Proposed entries not yet committed before proposals are refused as overloaded. */
const uncommittedEntriesMax = 50_000;
/** Read requests waiting at the leader (for a heartbeat round or a first commit). */
const pendingReadsMax = 10_000;
/** Read requests a follower has forwarded to the leader and not yet heard back about. */
const forwardedReadsMax = 10_000;
/** Heartbeat rounds whose send tick the leader remembers (for the lease). */
const heartbeatRoundsRemembered = 256;

interface PendingRead {
  readonly requestId: string;
  readonly from: NodeId;
  readonly index: number;
  readonly round: number;
}

interface AwaitingAdvance {
  readonly lastEntry: Entry | undefined;
  readonly snapshot: Snapshot | undefined;
  /** Whether the Ready had no snapshot and no soft state change. */
  readonly plain: boolean;
  /** The last committed entry handed out (by the Ready, or by takeCommittedEarly). */
  lastCommitted: number;
}

/**
 * One Raft server's consensus state.
 *
 * Caller's duties: call `tick()` at a steady rate; hand every received message to
 * `step()`; whenever `hasReady()` is true, take `ready()`, carry it out in the order its
 * documentation gives (send the early appends, persist, send, apply), then call
 * `advance()`, which also tells a leader that its entries are durable. `tick`, `step`,
 * `propose`, `readIndex` and the others may be called between `ready()` and `advance()`;
 * `ready()` may not.
 *
 * On restart, build a new node from what storage persisted ({@link RestoredState}) and
 * restore the state machine from `restored.snapshot` (if any) before applying the
 * committed entries of the first Ready.
 *
 * @example
 * ```ts
 * import { RaftNode } from "./node.ts";
 * const node = new RaftNode({
 *   id: "a", voters: ["a"], electionTicks: 10, heartbeatTicks: 1, preVote: true,
 *   checkQuorum: true, entriesPerAppendMax: 64, bytesPerAppendMax: 1 << 20,
 *   inflightAppendsMax: 8, readMode: "safe", leaseDriftTicks: 1, random: () => 0.5,
 * }, { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] });
 * const ready = node.ready(); // a single voter elects itself at once
 * node.advance();
 * ```
 */
export class RaftNode {
  readonly id: NodeId;
  private readonly options: RaftOptions;
  private voters: NodeId[];
  private voterSet: Set<NodeId>;

  private term: number;
  private vote: NodeId | null;
  private lead: NodeId | null = null;
  private role: Role = "follower";
  private readonly log: RaftLog;
  /** Latest snapshot known (restored, compacted locally, or installed); sent to laggards. */
  private snapshot: Snapshot | null;
  /** A snapshot received from the leader, to be handed out in the next Ready. */
  private pendingSnapshot: Snapshot | null = null;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Ticks since this node last heard from (or was) a leader; see `inLease`. */
  private ticksSinceLeaderContact: number;
  private tickCount = 0;

  private transferee: NodeId | null = null;
  private transferElapsed = 0;
  /** A timeoutNow was sent in this term: leases can no longer be trusted (see `leaseValid`). */
  private timeoutNowSent = false;

  private progress = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  private committedInTerm = false;

  private messages: Message[] = [];
  private readStates: ReadState[] = [];
  private readFailures: string[] = [];
  private pendingReads: PendingRead[] = [];
  private readsAwaitingCommit: { requestId: string; from: NodeId }[] = [];
  private forwardedReads = new Map<string, number>();
  private round = 0;
  private roundRequested = false;
  private roundSentTick = new Map<number, number>();
  private leaseStartTick = Number.NEGATIVE_INFINITY;

  private appendsPending = false;
  private commitBroadcastPending = false;

  private previousSoftState: SoftState;
  private previousHardState: HardState;
  private awaiting: AwaitingAdvance | null = null;

  /**
   * @param options the node's configuration (validated here).
   * @param restored what storage persisted (empty for a new node).
   * @throws {InvariantError} on inconsistent options or restored state.
   */
  constructor(options: RaftOptions, restored: RestoredState) {
    validateOptions(options);
    this.options = options;
    this.id = options.id;
    const snapshot = restored.snapshot;
    const snapshotVoters = snapshot?.meta.voters ?? [];
    this.voters = [...(snapshotVoters.length > 0 ? snapshotVoters : options.voters)];
    this.voterSet = new Set(this.voters);
    this.term = restored.hardState.term;
    this.vote = restored.hardState.vote;
    this.snapshot = snapshot;
    this.log = new RaftLog(
      snapshot?.meta.index ?? 0,
      snapshot?.meta.term ?? 0,
      restored.entries,
      restored.hardState.commit,
    );
    invariant(
      this.log.lastTerm() <= this.term,
      "restored log has entries from a term after the hard state's",
    );
    // A restarted node cannot know whether it acknowledged a leader's heartbeat just before
    // it crashed, so with lease reads it honours a possible lease for one election timeout.
    this.ticksSinceLeaderContact = options.readMode === "lease" ? 0 : options.electionTicks;
    this.previousHardState = restored.hardState;
    this.previousSoftState = { leader: null, role: "follower", term: this.term };
    this.becomeFollower(this.term, null);
    if (this.voters.length === 1 && this.voters[0] === this.id) this.hup(false);
  }

  // ---------------------------------------------------------------- public inputs

  /** Advances logical time by one tick (elections, heartbeats, timeouts). */
  tick(): void {
    this.tickCount++;
    this.ticksSinceLeaderContact++;
    this.expireForwardedReads();
    if (this.role === "leader") this.tickLeader();
    else this.tickElection();
  }

  /**
   * Starts an election now (with pre-vote when enabled). No-op on a leader, and, with
   * lease reads, on a node that heard from a leader within the election timeout: its
   * acknowledgement may back that leader's lease, which promises no other leader for
   * that long (use transferLeadership to move leadership instead).
   */
  campaign(): void {
    if (this.options.readMode === "lease" && this.inLease()) return;
    this.hup(false);
  }

  /**
   * Proposes `data` as a new log entry. Leader only; refused while a leadership transfer
   * is in progress, when the entry exceeds `bytesPerAppendMax`, or when too many entries
   * are uncommitted. The entry is committed when a later Ready lists it.
   */
  propose(data: Uint8Array): ProposeResult {
    if (this.role !== "leader") return { ok: false, reason: "notLeader", leader: this.lead };
    if (this.transferee !== null) return { ok: false, reason: "transferring", leader: this.lead };
    if (data.length > this.options.bytesPerAppendMax) {
      return { ok: false, reason: "tooLarge", leader: this.lead };
    }
    if (this.log.lastIndex() - this.log.committed >= uncommittedEntriesMax) {
      return { ok: false, reason: "overloaded", leader: this.lead };
    }
    const entry = this.appendEntry("normal", data);
    return { ok: true, index: entry.index, term: entry.term };
  }

  /**
   * Requests a linearizable read (thesis §6.4). The result arrives in a later Ready:
   * `readStates` (serve once the applied index reaches `index`) or `readFailures`
   * (retry, possibly elsewhere). A follower forwards the request to its leader.
   */
  readIndex(requestId: string): void {
    if (this.role === "leader") {
      this.leaderRead(requestId, this.id);
    } else if (this.lead !== null && this.forwardedReads.size < forwardedReadsMax) {
      this.forwardedReads.set(requestId, this.tickCount);
      this.send({
        type: "readIndex",
        from: this.id,
        to: this.lead,
        term: this.term,
        context: requestId,
      });
    } else {
      this.readFailures.push(requestId);
    }
  }

  /**
   * Hands leadership to `to` (thesis §3.10): stops accepting proposals, catches `to` up,
   * then tells it to campaign at once. Aborted after an election timeout. Leader only.
   */
  transferLeadership(to: NodeId): void {
    if (this.role !== "leader" || to === this.id || !this.voterSet.has(to)) return;
    if (this.transferee === to) return;
    this.transferee = to;
    this.transferElapsed = 0;
    const progress = this.progressOf(to);
    if (progress.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.maybeSendAppend(to, true);
  }

  /**
   * The application took `snapshot` at an applied index: the log up to it is discarded
   * and the snapshot kept to send to followers that fall behind.
   * @throws {InvariantError} when the snapshot is beyond the applied index.
   */
  compact(snapshot: Snapshot): void {
    if (snapshot.meta.index <= this.log.snapshotIndex) return;
    this.log.compact(snapshot.meta.index, snapshot.meta.term);
    this.snapshot = snapshot;
  }

  /** Handles one message from a peer. Messages from non-voters or for others are dropped. */
  step(message: Message): void {
    if (message.to !== this.id || !this.voterSet.has(message.from) || message.from === this.id) {
      return;
    }
    if (!this.stepTerm(message)) return;
    switch (message.type) {
      case "preVote":
      case "vote":
        this.handleVoteRequest(message);
        return;
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(message);
        return;
      case "follower":
        this.stepFollower(message);
        return;
      case "preCandidate":
      case "candidate":
        this.stepCandidate(message);
        return;
    }
  }

  // ---------------------------------------------------------------- Ready

  /** Whether `ready()` has anything to hand out (false while a Ready awaits `advance()`). */
  hasReady(): boolean {
    if (this.awaiting !== null) return false;
    this.flushLeaderSends();
    return this.softStateChanged() ||
      this.hardStateChanged() ||
      this.pendingSnapshot !== null ||
      this.log.unstableFrom <= this.log.lastIndex() ||
      this.messages.length > 0 ||
      this.log.applied < this.log.committed ||
      this.readStates.length > 0 ||
      this.readFailures.length > 0;
  }

  /**
   * Collects what the caller must do now; see {@link Ready} for the order.
   * @throws {InvariantError} when the previous Ready was not advanced.
   */
  ready(): Ready {
    invariant(this.awaiting === null, "ready() called before advance() of the previous Ready");
    this.flushLeaderSends();
    const softState = this.softStateChanged() ? this.softState() : undefined;
    const hardState = this.hardStateChanged() ? this.hardState() : undefined;
    const snapshot = this.pendingSnapshot ?? undefined;
    const entries = this.log.unstableEntries();
    const committedEntries = this.committedEntriesToApply(snapshot);
    const { messagesBeforePersist, messages } = this.splitMessages(hardState);
    const ready: Ready = {
      ...(softState === undefined ? {} : { softState }),
      ...(hardState === undefined ? {} : { hardState }),
      ...(snapshot === undefined ? {} : { snapshot }),
      entries,
      messagesBeforePersist,
      messages,
      committedEntries,
      readStates: this.readStates,
      readFailures: this.readFailures,
    };
    if (softState !== undefined) this.previousSoftState = softState;
    if (hardState !== undefined) this.previousHardState = hardState;
    this.messages = [];
    this.readStates = [];
    this.readFailures = [];
    const lastCommitted = committedEntries[committedEntries.length - 1];
    this.awaiting = {
      lastEntry: entries[entries.length - 1],
      snapshot,
      plain: snapshot === undefined && softState === undefined,
      lastCommitted: lastCommitted === undefined ? 0 : lastCommitted.index,
    };
    return ready;
  }

  /**
   * A leader's appends of its term, to send while the last Ready's disk write is still in
   * progress (entries proposed meanwhile, or the next window of a follower that
   * acknowledged). They are the same messages a Ready hands out in
   * `messagesBeforePersist`, with the same reasoning (see {@link Ready}): a leader
   * counts its own copy toward a commit only once persisted, so its appends promise
   * nothing about its disk, and two followers are a majority of three without it.
   * Returns nothing unless this node is a leader and the awaiting Ready is plain (no
   * snapshot, no role change, so its term is on disk already).
   */
  takeEarlyMessages(): Message[] {
    const awaiting = this.awaiting;
    if (awaiting === null || !awaiting.plain || this.role !== "leader") return [];
    this.flushLeaderSends();
    const early: Message[] = [];
    const rest: Message[] = [];
    for (const message of this.messages) (this.mayLeaveEarly(message) ? early : rest).push(message);
    this.messages = rest;
    return early;
  }

  /**
   * Entries committed since the last Ready was handed out, to apply while that Ready's
   * disk write is still in progress (after the Ready's own `committedEntries`). Messages
   * may be stepped meanwhile (an acknowledgement from a follower can commit entries this
   * node has persisted, or that are durable on a majority without it); waiting for the
   * write to finish would delay their application by a whole fsync. Committed entries
   * are durable on a majority, so applying them does not depend on this node's disk.
   *
   * Returns nothing when no Ready awaits `advance()`, or when the awaiting Ready carries
   * a snapshot or a role change (its committed entries are applied only after its
   * write, so nothing may be applied ahead of them). Returns only entries this node has
   * persisted or is writing now: once the write is done, nothing applied is missing from
   * its disk, so a snapshot taken at the applied index never skips an entry the log
   * still has to write (a follower can learn a commit index beyond its write).
   */
  takeCommittedEarly(): Entry[] {
    const awaiting = this.awaiting;
    if (awaiting === null || !awaiting.plain || this.pendingSnapshot !== null) return [];
    const from = Math.max(this.log.applied, awaiting.lastCommitted) + 1;
    // The entries being written count only while the log still holds them (a stepped
    // append of a newer leader may have replaced them meanwhile).
    const writing = awaiting.lastEntry !== undefined &&
        this.log.matchTerm(awaiting.lastEntry.index, awaiting.lastEntry.term)
      ? awaiting.lastEntry.index
      : 0;
    const entries = this.committedEntries(from, Math.max(this.stableIndex(), writing));
    const last = entries[entries.length - 1];
    if (last !== undefined) awaiting.lastCommitted = last.index;
    return entries;
  }

  /**
   * Acknowledges that the last Ready was carried out (persisted, sent, applied). Only now
   * does a leader count its own copy of the Ready's entries toward a commit quorum.
   */
  advance(): void {
    const awaiting = this.awaiting;
    invariant(awaiting !== null, "advance() called without a Ready");
    this.awaiting = null;
    if (awaiting.lastEntry !== undefined) {
      this.log.stableTo(awaiting.lastEntry.index, awaiting.lastEntry.term);
      if (this.role === "leader" && this.progressOf(this.id).maybeUpdate(this.stableIndex())) {
        this.maybeCommit();
      }
    }
    if (awaiting.snapshot !== undefined) {
      this.log.applied = Math.max(this.log.applied, awaiting.snapshot.meta.index);
      if (this.pendingSnapshot === awaiting.snapshot) this.pendingSnapshot = null;
    }
    this.log.applied = Math.max(this.log.applied, awaiting.lastCommitted);
  }

  /** The node's observable state. */
  status(): RaftStatus {
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      voters: [...this.voters],
    };
  }

  // ---------------------------------------------------------------- role changes

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = null;
      this.timeoutNowSent = false;
    }
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.options.electionTicks +
      Math.floor(this.options.random() * this.options.electionTicks);
    invariant(
      this.randomizedElectionTimeout >= this.options.electionTicks &&
        this.randomizedElectionTimeout < 2 * this.options.electionTicks,
      "options.random() must return a number in [0, 1)",
    );
    this.transferee = null;
    this.transferElapsed = 0;
    this.progress.clear();
    this.votes.clear();
    this.committedInTerm = false;
    this.failLeaderReads();
    this.failForwardedReads();
    this.round = 0;
    this.roundRequested = false;
    this.roundSentTick.clear();
    this.leaseStartTick = Number.NEGATIVE_INFINITY;
    this.appendsPending = false;
    this.commitBroadcastPending = false;
  }

  private becomeFollower(term: number, lead: NodeId | null): void {
    if (this.role === "leader") this.ticksSinceLeaderContact = 0;
    this.reset(term);
    this.lead = lead;
    this.role = "follower";
  }

  private becomePreCandidate(): void {
    invariant(this.role !== "leader", "a leader cannot become a pre-candidate");
    this.reset(this.term);
    this.role = "preCandidate";
  }

  private becomeCandidate(): void {
    invariant(this.role !== "leader", "a leader cannot become a candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    invariant(this.role === "candidate", `only a candidate can become leader, not a ${this.role}`);
    this.reset(this.term);
    this.lead = this.id;
    this.role = "leader";
    this.ticksSinceLeaderContact = 0;
    const next = this.log.lastIndex() + 1;
    for (const voter of this.voters) {
      const progress = new Progress(next, this.options.inflightAppendsMax);
      // Thesis §10.2.1: the leader counts only what its disk holds; the rest is counted
      // when a Ready carrying it is advanced.
      if (voter === this.id) progress.match = this.stableIndex();
      this.progress.set(voter, progress);
    }
    // §8: a new leader commits a blank entry of its term, which also commits everything
    // before it (§5.4.2) and enables ReadIndex.
    this.appendEntry("noop", new Uint8Array());
  }

  private hup(transfer: boolean): void {
    if (this.role === "leader" || !this.voterSet.has(this.id)) return;
    if (this.options.preVote && !transfer) this.campaignPreVote();
    else this.campaignVote(transfer);
  }

  /** Thesis §9.6: ask whether we could win before disturbing anyone's term. */
  private campaignPreVote(): void {
    this.becomePreCandidate();
    this.recordVote(this.id, true);
    if (this.tally().granted >= this.quorum()) {
      this.campaignVote(false);
      return;
    }
    for (const voter of this.voters) {
      if (voter === this.id) continue;
      this.send({
        type: "preVote",
        from: this.id,
        to: voter,
        term: this.term + 1,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
      });
    }
  }

  /** §5.2: become candidate in a new term and request votes. */
  private campaignVote(transfer: boolean): void {
    this.becomeCandidate();
    this.recordVote(this.id, true);
    if (this.tally().granted >= this.quorum()) {
      this.becomeLeader();
      return;
    }
    for (const voter of this.voters) {
      if (voter === this.id) continue;
      this.send({
        type: "vote",
        from: this.id,
        to: voter,
        term: this.term,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        ...(transfer ? { context: transferContext } : {}),
      });
    }
  }

  // ---------------------------------------------------------------- ticks

  private tickElection(): void {
    this.electionElapsed++;
    if (this.voterSet.has(this.id) && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    this.ticksSinceLeaderContact = 0;
    for (const [id, progress] of this.progress) {
      if (id === this.id || progress.state !== "snapshot") continue;
      // The snapshot (or its answer) may have been lost: probe again, which resends it
      // if the follower still needs it.
      progress.snapshotTicks++;
      if (progress.snapshotTicks >= 2 * this.options.electionTicks) progress.becomeProbe();
    }
    if (this.transferee !== null) {
      this.transferElapsed++;
      if (this.transferElapsed >= this.options.electionTicks) {
        this.transferee = null;
        this.transferElapsed = 0;
      }
    }
    if (this.electionElapsed >= this.options.electionTicks) {
      this.electionElapsed = 0;
      // Check quorum (thesis §6.2): a leader that has not heard from a majority within an
      // election timeout steps down, so clients can find the real leader.
      if (this.options.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, null);
        return;
      }
    }
    if (this.heartbeatElapsed >= this.options.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  private quorumActive(): boolean {
    let active = 0;
    for (const [id, progress] of this.progress) {
      if (id === this.id || progress.recentActive) active++;
      if (id !== this.id) progress.recentActive = false;
    }
    return active >= this.quorum();
  }

  // ---------------------------------------------------------------- step by term

  /**
   * Applies the term rules to a message (etcd-io/raft Step). Returns false when the
   * message is to be dropped.
   */
  private stepTerm(message: Message): boolean {
    if (message.term > this.term) {
      if (message.type === "preVote" || message.type === "vote") {
        const force = message.context === transferContext;
        // Thesis §4.2.3: a server that heard from a leader recently ignores vote requests,
        // so a partitioned server rejoining cannot disrupt a healthy cluster.
        if (!force && this.inLease()) return false;
      }
      if (message.type === "preVote") return true;
      if (message.type === "preVoteResp" && message.reject !== true) return true;
      const fromLeader = message.type === "append" || message.type === "heartbeat" ||
        message.type === "snapshot";
      const wasLeader = this.role === "leader";
      const electionElapsed = this.electionElapsed;
      this.becomeFollower(message.term, fromLeader ? message.from : null);
      // §5.2: only a leader's message or a granted vote resets the election timer. A node
      // that keeps campaigning with a stale log (say, one with a fast clock) must not keep
      // the others from timing out, or no one with an up-to-date log ever campaigns.
      if (!fromLeader && !wasLeader) this.electionElapsed = electionElapsed;
      return true;
    }
    if (message.term < this.term) {
      if (
        (this.options.checkQuorum || this.options.preVote) &&
        (message.type === "heartbeat" || message.type === "append")
      ) {
        // A stale leader learns of the newer term from this answer and steps down.
        this.send({ type: "appendResp", from: this.id, to: message.from, term: this.term });
      } else if (message.type === "preVote") {
        this.send({
          type: "preVoteResp",
          from: this.id,
          to: message.from,
          term: this.term,
          reject: true,
        });
      } else if (message.type === "readIndex") {
        this.send({
          type: "readIndexResp",
          from: this.id,
          to: message.from,
          term: this.term,
          reject: true,
          ...(message.context === undefined ? {} : { context: message.context }),
        });
      }
      return false;
    }
    return true;
  }

  /** A leader (or a node that heard from one within an election timeout) keeps its lease. */
  private inLease(): boolean {
    if (!this.options.checkQuorum) return false;
    return this.role === "leader" || this.ticksSinceLeaderContact < this.options.electionTicks;
  }

  private handleVoteRequest(message: Message): void {
    const preVote = message.type === "preVote";
    const responseType: MessageType = preVote ? "preVoteResp" : "voteResp";
    const lastIndex = message.index ?? 0;
    const lastTerm = message.logTerm ?? 0;
    const force = message.context === transferContext;
    const canVote = this.vote === message.from ||
      (this.vote === null && this.lead === null) ||
      (preVote && message.term > this.term);
    const leaseBlocks = !force && this.vote !== message.from && this.inLease();
    if (canVote && !leaseBlocks && this.log.isUpToDate(lastIndex, lastTerm)) {
      // A pre-vote is granted in the candidate's future term; a vote in our (equal) term.
      this.send({
        type: responseType,
        from: this.id,
        to: message.from,
        term: message.term,
        reject: false,
      });
      if (!preVote) {
        this.electionElapsed = 0;
        this.vote = message.from;
      }
    } else {
      this.send({
        type: responseType,
        from: this.id,
        to: message.from,
        term: this.term,
        reject: true,
      });
    }
  }

  // ---------------------------------------------------------------- follower

  private stepFollower(message: Message): void {
    switch (message.type) {
      case "append":
      case "heartbeat":
      case "snapshot":
        this.heardFromLeader(message.from);
        if (message.type === "append") this.handleAppend(message);
        else if (message.type === "heartbeat") this.handleHeartbeat(message);
        else this.handleSnapshot(message);
        return;
      case "timeoutNow":
        // Thesis §3.10: the leader asks us to campaign at once, skipping pre-vote.
        this.hup(true);
        return;
      case "readIndex":
        this.rejectRead(message);
        return;
      case "readIndexResp":
        this.handleReadIndexResponse(message);
        return;
      default:
        return;
    }
  }

  private heardFromLeader(leader: NodeId): void {
    this.electionElapsed = 0;
    this.ticksSinceLeaderContact = 0;
    this.lead = leader;
  }

  /** §5.3: the AppendEntries receiver, with etcd's hint for fast back-tracking. */
  private handleAppend(message: Message): void {
    const prevIndex = message.index ?? 0;
    const prevTerm = message.logTerm ?? 0;
    const entries = message.entries ?? [];
    if (prevIndex < this.log.committed) {
      this.send({
        type: "appendResp",
        from: this.id,
        to: message.from,
        term: this.term,
        index: this.log.committed,
      });
      return;
    }
    const lastNew = this.log.maybeAppend(prevIndex, prevTerm, entries);
    if (lastNew !== undefined) {
      this.log.commitTo(Math.min(message.commit ?? 0, lastNew));
      this.send({
        type: "appendResp",
        from: this.id,
        to: message.from,
        term: this.term,
        index: lastNew,
      });
      return;
    }
    const hint = this.log.findConflictByTerm(Math.min(prevIndex, this.log.lastIndex()), prevTerm);
    this.send({
      type: "appendResp",
      from: this.id,
      to: message.from,
      term: this.term,
      index: prevIndex,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term,
    });
  }

  private handleHeartbeat(message: Message): void {
    const commit = message.commit ?? 0;
    invariant(
      commit <= this.log.lastIndex(),
      `the leader's heartbeat says entries up to ${commit} are committed here, but this ` +
        `server's log ends at ${this.log.lastIndex()}: it lost entries it had acknowledged ` +
        `(a truncated, damaged or restored data directory, a disk that does not honour fsync, ` +
        `or an empty one started while the leader remembered its old log: see "A member that ` +
        `lost its data directory" in the README)`,
    );
    this.log.commitTo(commit);
    this.send({
      type: "heartbeatResp",
      from: this.id,
      to: message.from,
      term: this.term,
      ...(message.context === undefined ? {} : { context: message.context }),
    });
  }

  /** §7: InstallSnapshot receiver. */
  private handleSnapshot(message: Message): void {
    const snapshot = message.snapshot;
    if (snapshot === undefined) return;
    const { index, term } = snapshot.meta;
    let restored = false;
    if (index > this.log.committed) {
      if (this.log.matchTerm(index, term)) {
        // We already have the snapshot's last entry: keep our log, commit up to it.
        this.log.commitTo(index);
      } else {
        this.log.restore(snapshot);
        if (snapshot.meta.voters.length > 0) this.setVoters(snapshot.meta.voters);
        this.snapshot = snapshot;
        this.pendingSnapshot = snapshot;
        restored = true;
      }
    }
    const acknowledged = restored ? this.log.lastIndex() : this.log.committed;
    this.send({
      type: "appendResp",
      from: this.id,
      to: message.from,
      term: this.term,
      index: acknowledged,
    });
  }

  private handleReadIndexResponse(message: Message): void {
    const requestId = message.context;
    if (requestId === undefined || !this.forwardedReads.delete(requestId)) return;
    if (message.reject === true || message.index === undefined) this.readFailures.push(requestId);
    else this.readStates.push({ requestId, index: message.index });
  }

  // ---------------------------------------------------------------- candidate

  private stepCandidate(message: Message): void {
    switch (message.type) {
      case "append":
      case "heartbeat":
      case "snapshot":
        // §5.2: a candidate that hears from a leader of its term (or later) steps down.
        this.becomeFollower(message.term, message.from);
        this.stepFollower(message);
        return;
      case "preVoteResp":
      case "voteResp": {
        const expected: MessageType = this.role === "preCandidate" ? "preVoteResp" : "voteResp";
        if (message.type !== expected) return;
        this.recordVote(message.from, message.reject !== true);
        const { granted, rejected } = this.tally();
        if (granted >= this.quorum()) {
          if (this.role === "preCandidate") this.campaignVote(false);
          else this.becomeLeader();
        } else if (rejected >= this.quorum()) {
          this.becomeFollower(this.term, null);
        }
        return;
      }
      case "readIndex":
        this.rejectRead(message);
        return;
      default:
        return;
    }
  }

  private recordVote(from: NodeId, granted: boolean): void {
    if (!this.votes.has(from)) this.votes.set(from, granted);
  }

  private tally(): { granted: number; rejected: number } {
    let granted = 0;
    let rejected = 0;
    for (const vote of this.votes.values()) {
      if (vote) granted++;
      else rejected++;
    }
    return { granted, rejected };
  }

  // ---------------------------------------------------------------- leader

  private stepLeader(message: Message): void {
    const progress = this.progress.get(message.from);
    if (progress === undefined) return;
    switch (message.type) {
      case "appendResp":
        progress.recentActive = true;
        if (message.reject === true) this.handleAppendRejected(message, progress);
        else this.handleAppendAccepted(message, progress);
        return;
      case "heartbeatResp":
        progress.recentActive = true;
        this.handleHeartbeatResponse(message, progress);
        return;
      case "readIndex":
        if (message.context !== undefined) this.leaderRead(message.context, message.from);
        return;
      default:
        return;
    }
  }

  private handleAppendRejected(message: Message, progress: Progress): void {
    const rejected = message.index ?? 0;
    let matchHint = message.rejectHint ?? 0;
    const hintTerm = message.logTerm ?? 0;
    if (hintTerm > 0) {
      // Skip every entry of ours whose term is above the follower's term at the hint: none
      // of them can match (etcd-io/raft's fast back-tracking).
      matchHint = this.log.findConflictByTerm(matchHint, hintTerm).index;
    }
    if (progress.maybeDecreaseTo(rejected, matchHint)) {
      if (progress.state === "replicate") progress.becomeProbe();
      this.maybeSendAppend(message.from, true);
    }
  }

  private handleAppendAccepted(message: Message, progress: Progress): void {
    const index = message.index ?? 0;
    const updated = progress.maybeUpdate(index);
    if (!updated && !(progress.match === index && progress.state === "probe")) return;
    if (progress.state === "probe") {
      progress.becomeReplicate();
    } else if (progress.state === "snapshot" && progress.match + 1 >= this.log.firstIndex()) {
      progress.becomeProbe();
      progress.becomeReplicate();
    } else if (progress.state === "replicate") {
      progress.freeInflightsTo(index);
    }
    this.maybeCommit();
    while (this.maybeSendAppend(message.from, false)) {
      // Send as much as the flow control allows.
    }
    if (message.from === this.transferee && progress.match === this.log.lastIndex()) {
      this.sendTimeoutNow(message.from);
    }
  }

  private handleHeartbeatResponse(message: Message, progress: Progress): void {
    progress.probeSent = false;
    if (progress.state === "replicate" && progress.isPaused()) progress.freeFirstInflight();
    if (progress.match < this.log.lastIndex()) this.maybeSendAppend(message.from, true);
    const round = message.context === undefined ? NaN : Number(message.context);
    if (Number.isSafeInteger(round) && round > progress.ackedRound && round <= this.round) {
      progress.ackedRound = round;
      this.releaseConfirmedReads();
    }
  }

  private appendEntry(kind: EntryKind, data: Uint8Array): Entry {
    const entry: Entry = { term: this.term, index: this.log.lastIndex() + 1, kind, data };
    // The leader's own match advances when the entry is persisted (advance()), not here:
    // its appends may go out before its disk write completes (Ready.messagesBeforePersist).
    this.log.append([entry]);
    this.appendsPending = true;
    return entry;
  }

  /** §5.3, §5.4.2: commit the highest index stored on a quorum, if it is of our term. */
  private maybeCommit(): boolean {
    const matches: number[] = [];
    for (const voter of this.voters) matches.push(this.progressOf(voter).match);
    matches.sort((a, b) => b - a);
    const candidate = matches[this.quorum() - 1]!;
    if (candidate <= this.log.committed || this.log.term(candidate) !== this.term) return false;
    this.log.commitTo(candidate);
    this.commitBroadcastPending = true;
    if (!this.committedInTerm) {
      this.committedInTerm = true;
      const waiting = this.readsAwaitingCommit;
      this.readsAwaitingCommit = [];
      for (const read of waiting) this.leaderRead(read.requestId, read.from);
    }
    return true;
  }

  /**
   * Sends the next append (or the snapshot) to `to` if flow control allows. Returns
   * whether a message was sent.
   */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const progress = this.progressOf(to);
    if (progress.isPaused()) return false;
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) {
      invariant(prevIndex < this.log.snapshotIndex, `progress of ${to} is beyond the log`);
      if (!progress.recentActive) return false;
      const snapshot = this.snapshot;
      invariant(
        snapshot !== null && snapshot.meta.index === this.log.snapshotIndex,
        "the log is compacted but the snapshot covering it is missing",
      );
      progress.becomeSnapshot(snapshot.meta.index);
      this.send({ type: "snapshot", from: this.id, to, term: this.term, snapshot });
      return true;
    }
    const entries = this.log.slice(
      progress.next,
      this.log.lastIndex() + 1,
      this.options.entriesPerAppendMax,
      this.options.bytesPerAppendMax,
    );
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({
      type: "append",
      from: this.id,
      to,
      term: this.term,
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: this.log.committed,
    });
    const last = entries[entries.length - 1];
    if (last !== undefined) progress.sentEntries(last.index);
    else if (progress.state === "probe") progress.probeSent = true;
    return true;
  }

  /** Sends what proposals and commits since the last Ready call for, in batches. */
  private flushLeaderSends(): void {
    if (this.role !== "leader") return;
    if (this.roundRequested) {
      this.roundRequested = false;
      this.broadcastHeartbeat();
    }
    if (!this.appendsPending && !this.commitBroadcastPending) return;
    const commitChanged = this.commitBroadcastPending;
    this.appendsPending = false;
    this.commitBroadcastPending = false;
    for (const voter of this.voters) {
      if (voter === this.id) continue;
      if (this.maybeSendAppend(voter, false)) {
        while (this.maybeSendAppend(voter, false)) {
          // Fill the pipeline.
        }
      } else if (commitChanged) {
        this.maybeSendAppend(voter, true);
      }
    }
  }

  private broadcastHeartbeat(): void {
    this.round++;
    this.roundSentTick.set(this.round, this.tickCount);
    if (this.roundSentTick.size > heartbeatRoundsRemembered) {
      const oldest = this.roundSentTick.keys().next();
      if (oldest.done !== true) this.roundSentTick.delete(oldest.value);
    }
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      this.send({
        type: "heartbeat",
        from: this.id,
        to: id,
        term: this.term,
        commit: Math.min(progress.match, this.log.committed),
        context: String(this.round),
      });
    }
    if (this.voters.length === 1) this.releaseConfirmedReads();
  }

  private sendTimeoutNow(to: NodeId): void {
    this.timeoutNowSent = true;
    this.send({ type: "timeoutNow", from: this.id, to, term: this.term });
  }

  // ---------------------------------------------------------------- reads

  /**
   * Thesis §6.4: serve a read at the current commit index once leadership is confirmed
   * (a heartbeat round sent after the request, acknowledged by a quorum), or at once while
   * the lease holds (§6.4.1). A new leader first commits an entry of its term.
   */
  private leaderRead(requestId: string, from: NodeId): void {
    if (this.pendingReads.length + this.readsAwaitingCommit.length >= pendingReadsMax) {
      this.failRead(requestId, from);
      return;
    }
    if (!this.committedInTerm) {
      this.readsAwaitingCommit.push({ requestId, from });
      return;
    }
    const index = this.log.committed;
    if (this.voters.length === 1 || (this.options.readMode === "lease" && this.leaseValid())) {
      this.serveRead(requestId, from, index);
      return;
    }
    this.pendingReads.push({ requestId, from, index, round: this.round + 1 });
    this.roundRequested = true;
  }

  /**
   * The lease: a quorum acknowledged a heartbeat round sent at `leaseStartTick`, and each
   * of them refuses to vote for an election timeout after receiving it (`inLease`), so no
   * other leader can exist before that timeout, less the allowed drift, has passed. A
   * leadership transfer campaign bypasses that refusal, so after sending timeoutNow in
   * this term the lease is never trusted again.
   */
  private leaseValid(): boolean {
    if (!this.options.checkQuorum || this.timeoutNowSent || this.transferee !== null) return false;
    return this.tickCount - this.leaseStartTick <
      this.options.electionTicks - this.options.leaseDriftTicks;
  }

  private releaseConfirmedReads(): void {
    const rounds: number[] = [];
    for (const [id, progress] of this.progress) {
      rounds.push(id === this.id ? this.round : progress.ackedRound);
    }
    rounds.sort((a, b) => b - a);
    const confirmed = rounds[this.quorum() - 1]!;
    const sentTick = this.roundSentTick.get(confirmed);
    if (sentTick !== undefined && sentTick > this.leaseStartTick) this.leaseStartTick = sentTick;
    let served = 0;
    while (served < this.pendingReads.length && this.pendingReads[served]!.round <= confirmed) {
      const read = this.pendingReads[served]!;
      this.serveRead(read.requestId, read.from, read.index);
      served++;
    }
    if (served > 0) this.pendingReads.splice(0, served);
  }

  private serveRead(requestId: string, from: NodeId, index: number): void {
    if (from === this.id) {
      this.readStates.push({ requestId, index });
    } else {
      this.send({
        type: "readIndexResp",
        from: this.id,
        to: from,
        term: this.term,
        context: requestId,
        index,
      });
    }
  }

  private failRead(requestId: string, from: NodeId): void {
    if (from === this.id) {
      this.readFailures.push(requestId);
    } else {
      this.send({
        type: "readIndexResp",
        from: this.id,
        to: from,
        term: this.term,
        context: requestId,
        reject: true,
      });
    }
  }

  private rejectRead(message: Message): void {
    if (message.context !== undefined) this.failRead(message.context, message.from);
  }

  private failLeaderReads(): void {
    for (const read of this.readsAwaitingCommit) this.failRead(read.requestId, read.from);
    for (const read of this.pendingReads) this.failRead(read.requestId, read.from);
    this.readsAwaitingCommit = [];
    this.pendingReads = [];
  }

  private failForwardedReads(): void {
    for (const requestId of this.forwardedReads.keys()) this.readFailures.push(requestId);
    this.forwardedReads.clear();
  }

  private expireForwardedReads(): void {
    for (const [requestId, sentTick] of this.forwardedReads) {
      // Map iteration follows insertion order, so the oldest come first.
      if (this.tickCount - sentTick < this.options.electionTicks) break;
      this.forwardedReads.delete(requestId);
      this.readFailures.push(requestId);
    }
  }

  // ---------------------------------------------------------------- helpers

  private send(message: Message): void {
    this.messages.push(message);
  }

  private quorum(): number {
    return Math.floor(this.voters.length / 2) + 1;
  }

  private progressOf(id: NodeId): Progress {
    const progress = this.progress.get(id);
    invariant(progress !== undefined, `no progress for ${id}`);
    return progress;
  }

  private setVoters(voters: readonly NodeId[]): void {
    this.voters = [...voters];
    this.voterSet = new Set(this.voters);
  }

  private softState(): SoftState {
    return { leader: this.lead, role: this.role, term: this.term };
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private softStateChanged(): boolean {
    const previous = this.previousSoftState;
    return previous.leader !== this.lead || previous.role !== this.role ||
      previous.term !== this.term;
  }

  private hardStateChanged(): boolean {
    const previous = this.previousHardState;
    return previous.term !== this.term || previous.vote !== this.vote ||
      previous.commit !== this.log.committed;
  }

  /** Highest index of the log known durable (handed out in an advanced Ready, or restored). */
  private stableIndex(): number {
    return Math.min(this.log.unstableFrom - 1, this.log.lastIndex());
  }

  /**
   * Splits the queued messages for a Ready: a leader's appends of its term may leave
   * before the disk write (see {@link Ready}) unless this Ready changes the persisted term
   * or vote, which every message of the term depends on.
   */
  private splitMessages(
    hardState: HardState | undefined,
  ): { messagesBeforePersist: Message[]; messages: Message[] } {
    const all = this.messages;
    const termOrVoteChanged = hardState !== undefined &&
      (hardState.term !== this.previousHardState.term ||
        hardState.vote !== this.previousHardState.vote);
    if (this.role !== "leader" || termOrVoteChanged) {
      return { messagesBeforePersist: [], messages: all };
    }
    const messagesBeforePersist: Message[] = [];
    const messages: Message[] = [];
    for (const message of all) {
      (this.mayLeaveEarly(message) ? messagesBeforePersist : messages).push(message);
    }
    return { messagesBeforePersist, messages };
  }

  /** A leader's own append of its term: it promises nothing about this node's disk. */
  private mayLeaveEarly(message: Message): boolean {
    return message.type === "append" && message.term === this.term && message.from === this.id;
  }

  private committedEntriesToApply(snapshot: Snapshot | undefined): Entry[] {
    return this.committedEntries(Math.max(this.log.applied, snapshot?.meta.index ?? 0) + 1);
  }

  /**
   * Committed entries from `from` on, at most up to `bound` and at most
   * {@link committedEntriesPerReadyMax} of them.
   */
  private committedEntries(from: number, bound = Infinity): Entry[] {
    const to = Math.min(this.log.committed, bound, from + committedEntriesPerReadyMax - 1);
    if (to < from) return [];
    return this.log.entries.slice(from - this.log.snapshotIndex - 1, to - this.log.snapshotIndex);
  }
}

function validateOptions(options: RaftOptions): void {
  invariant(options.voters.length >= 1, "voters must not be empty");
  invariant(new Set(options.voters).size === options.voters.length, "voters must be distinct");
  invariant(options.heartbeatTicks >= 1, "heartbeatTicks must be at least 1");
  invariant(
    options.electionTicks > options.heartbeatTicks,
    `electionTicks (${options.electionTicks}) must exceed heartbeatTicks (${options.heartbeatTicks})`,
  );
  invariant(options.entriesPerAppendMax >= 1, "entriesPerAppendMax must be at least 1");
  invariant(options.bytesPerAppendMax >= 1, "bytesPerAppendMax must be at least 1");
  invariant(options.inflightAppendsMax >= 1, "inflightAppendsMax must be at least 1");
  if (options.readMode === "lease") {
    invariant(options.checkQuorum, "lease reads require checkQuorum");
    invariant(
      options.leaseDriftTicks >= 1 && options.leaseDriftTicks < options.electionTicks,
      "leaseDriftTicks must be in [1, electionTicks)",
    );
  }
}
