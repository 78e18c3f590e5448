/**
 * The running lock node: the one owner of the Raft loop and of everything that hangs
 * off it (pending proposals, blocking acquires, session deadlines, linearizable reads).
 *
 * ## The loop (STYLE.md, convention 3, and where it departs from it)
 *
 * Inputs (ticks, peer messages, proposals, read requests) are queued and fed to the
 * core at the start of a loop turn. A turn then handles every Ready in the order the
 * contract in `src/raft/types.ts` prescribes: persist (snapshot, entries, hard state in
 * one durable save), send, restore/apply, answer reads, advance. The loop is never
 * re-entered, and only one save is in flight: the entries proposed while it runs all
 * go into the next Ready's save, so one fsync covers every proposal made meanwhile
 * (group commit) and messages to one peer travel in one batch.
 *
 * Convention 3's plain order (persist, send, apply, advance) is kept wherever the
 * meaning of a step depends on this server's disk: votes, acknowledgements, heartbeats,
 * snapshots, a snapshot restore and a role change. Three steps that do not depend on it
 * run sooner, because each saves a fsync on the path of every lock handoff
 * (BENCHMARKS.md, "Where b's time goes"): a leader's appends leave before its own save
 * (thesis §10.2.1; the leader counts its copy toward a commit only after the save);
 * committed entries are applied before the save of newer ones (they are durable on a
 * majority already); and while a save runs, peer messages are stepped, proposals
 * appended, the new appends sent and the entries a follower's acknowledgement commits
 * applied (see `#stepDuringSave`). The simulator does the same, so the deterministic
 * runs check this order, not the plain one.
 *
 * ## Leadership
 *
 * Only the leader serves operations; the rest answer NOT_LEADER with the leader's
 * address. A proposal is answered when its entry is applied, if the entry at that
 * index has the proposal's term; otherwise (another leader's entry landed there, or
 * leadership was lost) it fails with NOT_LEADER and the client retries with the same
 * request id, which exactly-once makes safe.
 *
 * Session deadlines live in the leader's memory only. A new leader gives every session
 * a full TTL from the moment it leads (and sessions it learns of later, from the
 * moment it applies their open), so no session expires early because of a leader
 * change (DESIGN.md invariant 8).
 *
 * @module
 */
import {
  DlockError,
  DownstreamUnavailableError,
  InvalidArgumentError,
  NotHolderError,
  NotLeaderError,
  ResourceExhaustedError,
  SessionExpiredError,
  TimeoutError,
} from "../errors.ts";
import { FilewriterUnavailableError } from "../filewriter/client.ts";
import { limits } from "../limits.ts";
import {
  type ApplyOutcome,
  encodeCommand,
  type LockCommand,
  LockStateMachine,
  resultError,
} from "../lock/mod.ts";
import type { Logger } from "../log.ts";
import type {
  Entry,
  HardState,
  Message,
  NodeId,
  ProposeResult,
  RaftStatus,
  Ready,
  Role,
  Snapshot,
} from "../raft/types.ts";
import type { Transport } from "../transport/types.ts";
import { DeadlineQueue } from "./deadline_queue.ts";
import type {
  AcquireRequest,
  AcquireResponse,
  AppendRequest,
  AppendResponse,
  CloseSessionRequest,
  CloseSessionResponse,
  KeepAliveRequest,
  KeepAliveResponse,
  OpenSessionRequest,
  OpenSessionResponse,
  ReleaseRequest,
  ReleaseResponse,
  StatusRequest,
  StatusResponse,
} from "./requests.ts";

/** What the node needs of the Raft core (`RaftNode` of src/raft/mod.ts). */
export interface RaftCore {
  tick(): void;
  step(message: Message): void;
  propose(data: Uint8Array): ProposeResult;
  readIndex(requestId: string): void;
  transferLeadership(to: NodeId): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(): void;
  takeEarlyMessages(): Message[];
  takeCommittedEarly(): Entry[];
  compact(snapshot: Snapshot): void;
  status(): RaftStatus;
}

/** What the node needs of the log storage (`KvLogStorage` of src/storage/). */
export interface LogStorage {
  save(
    batch: { hardState?: HardState; entries: readonly Entry[]; snapshot?: Snapshot },
  ): Promise<void>;
  saveSnapshotAndCompact(snapshot: Snapshot): Promise<void>;
  close(): Promise<void> | void;
}

/** What the node needs of the filewriter client (src/filewriter/client.ts). */
export interface FilewriterAppender {
  append(request: {
    file: string;
    lock: string;
    token: number;
    requestId: string;
    data: Uint8Array;
  }): Promise<{ offset: number; size?: number; duplicate: boolean }>;
}

/** Options of {@link LockNode}. */
export interface LockNodeOptions {
  readonly self: NodeId;
  readonly members: readonly NodeId[];
  readonly raft: RaftCore;
  readonly storage: LogStorage;
  readonly transport: Transport;
  /** The state machine, restored from the latest snapshot (or empty). */
  readonly machine: LockStateMachine;
  /** Index of the snapshot the machine was restored from (0 if none). */
  readonly snapshotIndex: number;
  /** The hard state storage holds at start. */
  readonly restoredHardState: HardState;
  readonly filewriter: FilewriterAppender | null;
  /** The filewriter's address as given on the command line (status, messages). */
  readonly filewriterAddress: string;
  readonly logger: Logger;
  /** Milliseconds per Raft tick. */
  readonly tickMs: number;
  /** The election timeout, reported by status (default: not reported). */
  readonly electionTimeoutMs?: number;
  /**
   * Shortest TTL granted: a session asking for less gets this (see `sessionTtlMsFloor`
   * in limits.ts). Decided here, before proposing, as the state machine reads no config.
   * Default `limits.sessionTtlMsMin` (no raise).
   */
  readonly sessionTtlMsMin?: number;
  /** Applied entries between snapshots (default limits.logEntriesBeforeSnapshot). */
  readonly logEntriesBeforeSnapshot?: number;
  /** Wall clock, for the timestamps in commands (shown by status); default Date.now. */
  readonly nowMs?: () => number;
  /**
   * Monotonic clock for this server's own deadlines (session TTLs, acquire timeouts, the
   * commit flush); default performance.now. Never the wall clock: a step of the system
   * clock (NTP, an operator) must not expire every session at once, or keep them alive.
   */
  readonly monotonicMs?: () => number;
  /** Called when the node cannot go on (a failed save): the process must exit. */
  readonly onFatal: (error: unknown) => void;
}

interface PendingProposal {
  readonly term: number;
  readonly onApplied: (outcome: ApplyOutcome) => void;
  readonly onFailed: (error: DlockError) => void;
}

interface QueuedProposal {
  readonly data: Uint8Array;
  readonly onApplied: (outcome: ApplyOutcome) => void;
  readonly onFailed: (error: DlockError) => void;
}

/** A blocking acquire waiting in a lock's queue, answered by a grant, end or cancel. */
interface AcquireWaiter {
  readonly sessionId: number;
  readonly lock: string;
  readonly requestId: number;
  readonly resolve: (response: AcquireResponse) => void;
  readonly reject: (error: DlockError) => void;
  done: boolean;
  /** Why the caller gave up, once it did; the cancel is proposed once. */
  cancelReason: "TIMEOUT" | "CANCELLED" | null;
}

interface ReadWaiter {
  readonly resolve: () => void;
  readonly reject: (error: DlockError) => void;
}

/** Cancels a blocking acquire (stream CancelRequest, unary call cancelled). */
export interface AcquireControl {
  /** Set by the node: withdraws the wait (proposes cancelWait) and answers CANCELLED. */
  cancel?: () => void;
}

const waiterKeySeparator = "\u0000";
/** A save slower than this is logged (it delays heartbeats). */
const slowSaveMs = 200;
/** Longest a commit-index-only change of the hard state waits to be saved. */
const commitFlushMs = 200;

function waiterKey(sessionId: number, lock: string): string {
  return `${sessionId}${waiterKeySeparator}${lock}`;
}

/** The lock node; see the module documentation. */
export class LockNode {
  readonly #options: LockNodeOptions;
  readonly #raft: RaftCore;
  readonly #log: Logger;
  readonly #nowMs: () => number;
  readonly #monotonicMs: () => number;
  #machine: LockStateMachine;

  // Inputs, fed to the core at the start of each loop turn.
  #ticksPending = 0;
  #inbox: Message[] = [];
  #proposalQueue: QueuedProposal[] = [];
  #readQueue: string[] = [];

  #scheduled = false;
  #busy = false;
  /** Whether a Ready's save runs (see #stepDuringSave). */
  #saving = false;
  #stepScheduled = false;
  #stopped = false;
  #idle: Promise<void> = Promise.resolve();
  #tickTimer: ReturnType<typeof setInterval> | undefined;

  // Raft view.
  #role: Role = "follower";
  #leader: NodeId | null = null;
  #term = 0;
  #appliedIndex = 0;
  #appliedTerm = 0;
  /** Index of the latest snapshot taken (or restored). */
  #snapshotIndex: number;
  /** The latest snapshot taken, used for the next compaction. */
  #heldSnapshot: Snapshot | null = null;
  /** The compaction being persisted (at most one at a time; it never rejects), or null. */
  #compacting: Promise<void> | null = null;
  /** Index of the new leader's first entry; reads wait until it is applied. */
  #leaderStartIndex = Infinity;
  #latestHardState: HardState | null = null;
  #savedHardState: HardState | null = null;
  #commitSavedAtMs = -Infinity;
  #commitFlushWanted = false;
  readonly #matchIndex = new Map<NodeId, number>();
  /** When this server last heard from each member (monotonic ms; status shows it). */
  readonly #lastHeardMs = new Map<NodeId, number>();

  // Requests in flight.
  readonly #pending = new Map<number, PendingProposal>();
  readonly #waiters = new Map<string, Set<AcquireWaiter>>();
  readonly #acquireDeadlines = new DeadlineQueue<AcquireWaiter>();
  readonly #reads = new Map<string, ReadWaiter>();
  readonly #appliedWaiters = new DeadlineQueue<ReadWaiter>();
  #readCounter = 0;

  // Session deadlines (leader only): one heap entry per session, re-pushed when due
  // but extended (lazy), so keepalives cost a map write.
  readonly #sessionDeadlines = new Map<number, number>();
  readonly #sessionHeap = new DeadlineQueue<number>();

  constructor(options: LockNodeOptions) {
    this.#options = options;
    this.#raft = options.raft;
    this.#log = options.logger;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#monotonicMs = options.monotonicMs ?? (() => performance.now());
    this.#machine = options.machine;
    this.#snapshotIndex = options.snapshotIndex;
    this.#appliedIndex = options.snapshotIndex;
    this.#savedHardState = options.restoredHardState;
    this.#latestHardState = options.restoredHardState;
    const status = this.#raft.status();
    this.#term = status.term;
    options.transport.onReceive((messages) => this.#receive(messages));
  }

  /** Starts the tick timer (and so elections). */
  start(): void {
    this.#tickTimer = setInterval(() => {
      this.#ticksPending++;
      this.#checkDeadlines();
      this.#flushCommitIfIdle();
      this.#schedule();
    }, this.#options.tickMs);
  }

  /** The node's view: role, leader, term. */
  get role(): Role {
    return this.#role;
  }
  get leader(): NodeId | null {
    return this.#leader;
  }
  get appliedIndex(): number {
    return this.#appliedIndex;
  }
  /** The state machine (read-only use: tests, status). */
  get machine(): LockStateMachine {
    return this.#machine;
  }

  // ---------------------------------------------------------------- the loop

  #receive(messages: readonly Message[]): void {
    if (this.#stopped) return;
    const nowMs = this.#monotonicMs();
    for (const message of messages) {
      this.#lastHeardMs.set(message.from, nowMs);
      if (message.type === "appendResp" && message.reject !== true && message.index !== undefined) {
        const known = this.#matchIndex.get(message.from) ?? 0;
        if (message.index > known) this.#matchIndex.set(message.from, message.index);
      }
      if (this.#inbox.length < 100_000) this.#inbox.push(message);
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#busy && this.#saving) this.#scheduleStepDuringSave();
    if (this.#scheduled || this.#busy || this.#stopped) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      if (this.#busy || this.#stopped) return;
      this.#idle = this.#run();
    });
  }

  async #run(): Promise<void> {
    this.#busy = true;
    try {
      this.#feedInputs();
      while (!this.#stopped && this.#raft.hasReady()) {
        const ready = this.#raft.ready();
        await this.#handleReady(ready);
        this.#raft.advance();
        await this.#maybeSnapshot();
        this.#feedInputs();
      }
      if (this.#commitFlushWanted && !this.#stopped) {
        this.#commitFlushWanted = false;
        const latest = this.#latestHardState;
        if (latest !== null && latest !== this.#savedHardState) {
          await this.#options.storage.save({ hardState: latest, entries: [] });
          this.#savedHardState = latest;
          this.#commitSavedAtMs = this.#monotonicMs();
        }
      }
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#busy = false;
    }
    if (this.#hasInputs()) this.#schedule();
  }

  #scheduleStepDuringSave(): void {
    if (this.#stepScheduled || this.#stopped) return;
    this.#stepScheduled = true;
    queueMicrotask(() => {
      this.#stepScheduled = false;
      this.#stepDuringSave();
    });
  }

  /**
   * While a Ready's save runs (about a millisecond of fsync), the loop does not wait for
   * it: it steps the peers' messages and proposes the clients' commands that arrive, a
   * leader sends the appends of the new entries at once (RaftNode.takeEarlyMessages),
   * and the entries that become committed are applied at once
   * (RaftNode.takeCommittedEarly). So a follower's acknowledgement commits an entry (two
   * followers are a majority of three) without waiting for the leader's own save of
   * newer entries, and a grant reaches its waiter up to two fsyncs sooner. Everything
   * else (ticks, reads, messages that depend on this server's disk) waits for the next
   * Ready. The simulator does the same (tests/sim/simulation.ts, duringWrite).
   */
  #stepDuringSave(): void {
    if (!this.#saving || this.#stopped) return;
    try {
      this.#stepAndPropose();
      const early = this.#raft.takeEarlyMessages();
      if (early.length > 0) this.#options.transport.send(early);
      // The core hands out nothing after a Ready with a snapshot or a role change, whose
      // committed entries are applied only after the save.
      for (const entry of this.#raft.takeCommittedEarly()) this.#applyEntry(entry);
    } catch (error) {
      this.#fail(error);
    }
  }

  /** Stops the node for good after the Raft loop failed. */
  #fail(error: unknown): void {
    this.#stopped = true;
    clearInterval(this.#tickTimer);
    this.#log.error("cannot continue: the Raft loop failed", { error });
    this.#options.onFatal(error);
  }

  /** Steps the peers' messages and proposes the queued commands. */
  #stepAndPropose(): void {
    const inbox = this.#inbox;
    this.#inbox = [];
    for (const message of inbox) this.#raft.step(message);
    const proposals = this.#proposalQueue;
    this.#proposalQueue = [];
    for (const proposal of proposals) this.#proposeNow(proposal);
  }

  #hasInputs(): boolean {
    return this.#ticksPending > 0 || this.#inbox.length > 0 || this.#proposalQueue.length > 0 ||
      this.#readQueue.length > 0;
  }

  #feedInputs(): void {
    for (; this.#ticksPending > 0; this.#ticksPending--) this.#raft.tick();
    this.#stepAndPropose();
    const reads = this.#readQueue;
    this.#readQueue = [];
    for (const requestId of reads) {
      if (this.#role !== "leader") {
        this.#failRead(requestId, new NotLeaderError(this.#leader));
      } else {
        this.#raft.readIndex(requestId);
      }
    }
  }

  #proposeNow(proposal: QueuedProposal): void {
    const result = this.#raft.propose(proposal.data);
    if (result.ok) {
      this.#pending.set(result.index, {
        term: result.term,
        onApplied: proposal.onApplied,
        onFailed: proposal.onFailed,
      });
      return;
    }
    if (result.reason === "tooLarge") {
      proposal.onFailed(
        new InvalidArgumentError(
          "Cannot propose the command as it is larger than a log entry may be",
        ),
      );
    } else {
      proposal.onFailed(new NotLeaderError(result.leader));
    }
  }

  async #handleReady(ready: Ready): Promise<void> {
    // Committed entries are durable on a majority already, so applying them need not wait
    // for this Ready's own save (of newer entries): a grant reaches its waiter one fsync
    // sooner. Only in the plain case; a snapshot or a role change keeps the full order.
    const applyFirst = ready.snapshot === undefined && ready.softState === undefined;
    if (applyFirst) {
      for (const entry of ready.committedEntries) this.#applyEntry(entry);
    }
    // 0. A leader's appends go out before its own save (thesis §10.2.1): the followers'
    // fsyncs run in parallel with ours. The core counts our copy toward a commit only
    // after advance(), so this costs no safety.
    if (ready.messagesBeforePersist.length > 0) {
      this.#options.transport.send(ready.messagesBeforePersist);
    }
    // 1-2. Persist snapshot, entries and hard state in one durable save. Messages that
    // arrive meanwhile are stepped at once (see #stepDuringSave).
    this.#saving = true;
    try {
      await this.#persist(ready);
    } finally {
      this.#saving = false;
    }
    // 3. Send.
    if (ready.messages.length > 0) this.#options.transport.send(ready.messages);
    // Leadership changes are handled after the save: a new leader's fresh session
    // deadlines and a deposed leader's failed requests need no durable state.
    if (ready.softState !== undefined) this.#onSoftState(ready.softState);
    else if (ready.hardState !== undefined) this.#term = ready.hardState.term;
    // 4. Restore, then apply.
    if (!applyFirst) {
      if (ready.snapshot !== undefined) this.#restoreSnapshot(ready.snapshot);
      for (const entry of ready.committedEntries) this.#applyEntry(entry);
    }
    // 5. Reads.
    for (const state of ready.readStates) {
      const waiter = this.#reads.get(state.requestId);
      if (waiter === undefined) continue;
      this.#reads.delete(state.requestId);
      if (state.index <= this.#appliedIndex) waiter.resolve();
      else this.#appliedWaiters.push(state.index, waiter);
    }
    for (const requestId of ready.readFailures) {
      this.#failRead(requestId, new NotLeaderError(this.#leader));
    }
  }

  /**
   * Saves what the Ready asks to persist. A hard state that differs from the saved one
   * only in `commit` is not worth an fsync of its own: the commit index is volatile in
   * Raft (a restarted server learns it again from the leader), so it rides along with
   * the next save of entries, or is flushed within `commitFlushMs` when idle.
   */
  async #persist(ready: Ready): Promise<void> {
    if (ready.hardState !== undefined) this.#latestHardState = ready.hardState;
    const latest = this.#latestHardState;
    const saved = this.#savedHardState;
    const hardStateDirty = latest !== null &&
      (saved === null || latest.term !== saved.term || latest.vote !== saved.vote ||
        latest.commit !== saved.commit);
    const onlyCommit = latest !== null && saved !== null && latest.term === saved.term &&
      latest.vote === saved.vote;
    const needed = ready.snapshot !== undefined || ready.entries.length > 0 ||
      (hardStateDirty &&
        (!onlyCommit || this.#monotonicMs() - this.#commitSavedAtMs >= commitFlushMs));
    if (!needed) return;
    const batch: { hardState?: HardState; entries: readonly Entry[]; snapshot?: Snapshot } = {
      entries: ready.entries,
    };
    if (hardStateDirty && latest !== null) batch.hardState = latest;
    if (ready.snapshot !== undefined) batch.snapshot = ready.snapshot;
    const startedMs = performance.now();
    await this.#options.storage.save(batch);
    const savedMs = performance.now() - startedMs;
    // A save blocks heartbeats (they are sent after it): slow disks cause elections.
    if (savedMs > slowSaveMs) {
      this.#log.warn("slow storage save delays heartbeats", {
        ms: Math.round(savedMs),
        entries: ready.entries.length,
      });
    }
    if (hardStateDirty && latest !== null) {
      this.#savedHardState = latest;
      this.#commitSavedAtMs = this.#monotonicMs();
    }
  }

  /** Saves a deferred commit index (called from the tick when the loop is idle). */
  #flushCommitIfIdle(): void {
    const latest = this.#latestHardState;
    const saved = this.#savedHardState;
    if (latest === null || saved === null || latest.commit === saved.commit) return;
    if (this.#monotonicMs() - this.#commitSavedAtMs < commitFlushMs) return;
    this.#commitFlushWanted = true;
  }

  #failRead(requestId: string, error: DlockError): void {
    const waiter = this.#reads.get(requestId);
    if (waiter === undefined) return;
    this.#reads.delete(requestId);
    waiter.reject(error);
  }

  #onSoftState(soft: { leader: NodeId | null; role: Role; term: number }): void {
    const wasLeader = this.#role === "leader";
    const leaderChanged = soft.leader !== this.#leader || soft.term !== this.#term;
    this.#role = soft.role;
    this.#leader = soft.leader;
    this.#term = soft.term;
    if (soft.role === "leader" && !wasLeader) {
      this.#log.info("this server is now the leader", { term: soft.term });
    } else if (leaderChanged && soft.leader !== null && soft.role !== "leader") {
      this.#log.info("leader changed", { leader: soft.leader, term: soft.term });
    } else if (wasLeader && soft.role !== "leader") {
      this.#log.info("this server is no longer the leader", {
        leader: soft.leader ?? "none",
        term: soft.term,
      });
    } else if (leaderChanged) {
      this.#log.debug("no leader known", { role: soft.role, term: soft.term });
    }
    if (soft.role === "leader" && !wasLeader) this.#becameLeader();
    if (soft.role !== "leader" && wasLeader) this.#lostLeadership();
  }

  #becameLeader(): void {
    // The leader appended its first entry (a noop) on election; reads and keepalives
    // wait until it is applied, so the machine holds everything committed before.
    this.#leaderStartIndex = this.#raft.status().lastIndex;
    this.#matchIndex.clear();
    this.#sessionDeadlines.clear();
    this.#sessionHeap.clear();
    const nowMs = this.#monotonicMs();
    for (const session of this.#machine.sessions()) {
      this.#setSessionDeadline(session.id, nowMs + session.ttlMs);
    }
  }

  #lostLeadership(): void {
    this.#leaderStartIndex = Infinity;
    this.#sessionDeadlines.clear();
    this.#sessionHeap.clear();
    const error = new NotLeaderError(this.#leader);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const proposal of pending) proposal.onFailed(error);
    const waiters = [...this.#waiters.values()];
    this.#waiters.clear();
    this.#acquireDeadlines.clear();
    for (const set of waiters) for (const waiter of set) this.#rejectWaiter(waiter, error);
    const reads = [...this.#reads.keys()];
    for (const requestId of reads) this.#failRead(requestId, error);
    for (const waiter of this.#appliedWaiters.popDue(Infinity)) waiter.reject(error);
  }

  #restoreSnapshot(snapshot: Snapshot): void {
    this.#machine = LockStateMachine.restore(snapshot.data, {});
    this.#appliedIndex = snapshot.meta.index;
    this.#appliedTerm = snapshot.meta.term;
    this.#snapshotIndex = snapshot.meta.index;
    this.#heldSnapshot = null;
    this.#log.info("restored the lock state from a snapshot", { index: snapshot.meta.index });
  }

  #applyEntry(entry: Entry): void {
    if (entry.index <= this.#appliedIndex) return;
    this.#appliedIndex = entry.index;
    this.#appliedTerm = entry.term;
    const outcome = entry.kind === "normal"
      ? this.#machine.applyEncoded(entry.index, entry.data)
      : null;
    const pending = this.#pending.get(entry.index);
    if (pending !== undefined) {
      this.#pending.delete(entry.index);
      if (outcome !== null && pending.term === entry.term) pending.onApplied(outcome);
      else pending.onFailed(new NotLeaderError(this.#leader));
    }
    if (outcome !== null) this.#sideEffects(outcome);
    for (const waiter of this.#appliedWaiters.popDue(this.#appliedIndex)) waiter.resolve();
  }

  #sideEffects(outcome: ApplyOutcome): void {
    if (outcome.result.type === "sessionOpened" && this.#role === "leader") {
      const { sessionId, ttlMs } = outcome.result;
      if (!this.#sessionDeadlines.has(sessionId)) {
        this.#setSessionDeadline(sessionId, this.#monotonicMs() + ttlMs);
      }
    }
    for (const grant of outcome.grants) {
      this.#answerWaiters(
        grant.sessionId,
        grant.lock,
        { acquired: true, token: grant.token },
        null,
      );
    }
    for (const ended of outcome.endedSessions) {
      this.#sessionDeadlines.delete(ended.sessionId);
      const error = new SessionExpiredError(
        `Cannot acquire the lock as session ${ended.sessionId} was ${ended.reason}`,
      );
      for (const dropped of ended.droppedWaits) {
        this.#answerWaiters(ended.sessionId, dropped.lock, null, error);
      }
    }
  }

  /** Answers every waiter of (session, lock) with `response` or `error`. */
  #answerWaiters(
    sessionId: number,
    lock: string,
    response: AcquireResponse | null,
    error: DlockError | null,
  ): void {
    const key = waiterKey(sessionId, lock);
    const set = this.#waiters.get(key);
    if (set === undefined) return;
    this.#waiters.delete(key);
    for (const waiter of set) {
      if (response !== null) {
        if (!waiter.done) {
          waiter.done = true;
          waiter.resolve(response);
        }
      } else if (error !== null) {
        this.#rejectWaiter(waiter, error);
      }
    }
  }

  #rejectWaiter(waiter: AcquireWaiter, error: DlockError): void {
    if (waiter.done) return;
    waiter.done = true;
    waiter.reject(error);
  }

  /**
   * Every `logEntriesBeforeSnapshot` applied entries, takes a snapshot of the lock state
   * and compacts the log with the PREVIOUS snapshot: the log then always keeps at least
   * that many entries behind the applied index, so a follower a little behind catches
   * up with entries instead of a whole snapshot after every compaction.
   *
   * The compaction is persisted in the background, not awaited by the loop: the store
   * runs it in small steps between the loop's saves (see
   * `KvLogStorage.saveSnapshotAndCompact`), so appends are not held up for the whole
   * snapshot. At most one is in flight; no snapshot is taken meanwhile. Its failure stops
   * the node through `onFatal`, as a failed save does; {@link LockNode.stop} waits for it.
   */
  #maybeSnapshot(): void {
    if (this.#compacting !== null) return;
    const every = this.#options.logEntriesBeforeSnapshot ?? limits.logEntriesBeforeSnapshot;
    if (this.#appliedIndex - this.#snapshotIndex < every) return;
    const startedMs = performance.now();
    const taken: Snapshot = {
      meta: {
        index: this.#appliedIndex,
        term: this.#appliedTerm,
        voters: [...this.#options.members].sort(),
      },
      data: this.#machine.snapshot(),
    };
    const encodedMs = performance.now() - startedMs;
    this.#snapshotIndex = taken.meta.index;
    const previous = this.#heldSnapshot;
    this.#heldSnapshot = taken;
    if (previous === null) return;
    this.#raft.compact(previous);
    const persistStartedMs = performance.now();
    this.#compacting = this.#options.storage.saveSnapshotAndCompact(previous).then(
      () => {
        this.#compacting = null;
        this.#log.debug("compacted the log with a snapshot", {
          index: previous.meta.index,
          bytes: previous.data.byteLength,
          encodeMs: Math.round(encodedMs),
          persistMs: Math.round(performance.now() - persistStartedMs),
        });
      },
      (error: unknown) => {
        this.#compacting = null;
        if (this.#stopped) {
          // Stopping already (a failed save stopped the node, or stop() was called).
          this.#log.warn("a compaction failed while the node was stopping", { error });
          return;
        }
        this.#stopped = true;
        clearInterval(this.#tickTimer);
        this.#log.error("cannot continue: persisting a snapshot failed", { error });
        this.#options.onFatal(error);
      },
    );
  }

  // ---------------------------------------------------------------- timers

  #setSessionDeadline(sessionId: number, deadlineMs: number): void {
    const had = this.#sessionDeadlines.has(sessionId);
    this.#sessionDeadlines.set(sessionId, deadlineMs);
    if (!had) this.#sessionHeap.push(deadlineMs, sessionId);
  }

  #checkDeadlines(): void {
    const nowMs = this.#monotonicMs();
    if (this.#acquireDeadlines.peekDeadlineMs() <= nowMs) {
      for (const waiter of this.#acquireDeadlines.popDue(nowMs)) {
        this.#cancelWaiter(waiter, "TIMEOUT");
      }
    }
    if (this.#role !== "leader" || this.#sessionHeap.peekDeadlineMs() > nowMs) return;
    for (const sessionId of this.#sessionHeap.popDue(nowMs)) {
      const deadlineMs = this.#sessionDeadlines.get(sessionId);
      if (deadlineMs === undefined) continue; // Ended.
      if (deadlineMs > nowMs) {
        this.#sessionHeap.push(deadlineMs, sessionId); // Extended by keepalives.
        continue;
      }
      if (this.#machine.session(sessionId) === null) {
        this.#sessionDeadlines.delete(sessionId);
        continue;
      }
      // Retry later if the expiry does not get applied (it removes the deadline).
      this.#sessionDeadlines.set(sessionId, nowMs + 1_000);
      this.#sessionHeap.push(nowMs + 1_000, sessionId);
      this.#log.info("session expired: no keepalive within its TTL", { sessionId });
      this.#enqueueProposal(
        { type: "expireSession", nowMs: this.#nowMs(), sessionId },
        () => {},
        () => {},
      );
    }
  }

  // ---------------------------------------------------------------- operations

  /**
   * Queues a command for proposal. `onApplied` runs synchronously when its entry is
   * applied, so that follow-up state (a queued acquire's waiter) is registered before
   * the next entry is applied.
   * @throws {NotLeaderError} when this server is not the leader.
   * @throws {ResourceExhaustedError} when too many proposals are in flight.
   */
  #enqueueProposal(
    command: LockCommand,
    onApplied: (outcome: ApplyOutcome) => void,
    onFailed: (error: DlockError) => void,
  ): void {
    if (this.#stopped) {
      throw new DlockError("UNAVAILABLE", "Cannot serve the request as the server is stopping");
    }
    if (this.#role !== "leader") throw new NotLeaderError(this.#leader);
    if (this.#pending.size + this.#proposalQueue.length >= limits.pendingProposalsMax) {
      throw new ResourceExhaustedError(
        `Cannot accept the request as ${limits.pendingProposalsMax} proposals are in flight; retry later`,
      );
    }
    this.#proposalQueue.push({ data: encodeCommand(command), onApplied, onFailed });
    this.#schedule();
  }

  /** Proposes `command` and resolves with its outcome once applied. */
  #propose(command: LockCommand): Promise<ApplyOutcome> {
    return new Promise((resolve, reject) => {
      this.#enqueueProposal(command, resolve, reject);
    });
  }

  #ensureLeader(): void {
    if (this.#stopped) {
      throw new DlockError("UNAVAILABLE", "Cannot serve the request as the server is stopping");
    }
    if (this.#role !== "leader") throw new NotLeaderError(this.#leader);
  }

  /**
   * Resolves once this server is the leader and has applied everything committed up to
   * the moment of the call (ReadIndex), so local state answers linearizably.
   */
  #linearizableRead(): Promise<void> {
    this.#ensureLeader();
    return new Promise((resolve, reject) => {
      const requestId = `r${++this.#readCounter}`;
      this.#reads.set(requestId, { resolve, reject });
      this.#readQueue.push(requestId);
      this.#schedule();
    });
  }

  /** Resolves once the leader's first entry is applied (its view of sessions is complete). */
  #leaderCaughtUp(): Promise<void> {
    this.#ensureLeader();
    if (this.#appliedIndex >= this.#leaderStartIndex) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#appliedWaiters.push(this.#leaderStartIndex, { resolve, reject });
    });
  }

  /**
   * Opens a session with the requested TTL, raised to `sessionTtlMsMin`; the response
   * carries the TTL granted, which the client must use.
   */
  async openSession(request: OpenSessionRequest): Promise<OpenSessionResponse> {
    const outcome = await this.#propose({
      type: "openSession",
      nowMs: this.#nowMs(),
      clientName: request.clientName,
      ttlMs: Math.max(request.ttlMs, this.#options.sessionTtlMsMin ?? limits.sessionTtlMsMin),
      openKey: request.openKey,
    });
    const error = resultError(outcome.result);
    if (error !== null) throw error;
    if (outcome.result.type !== "sessionOpened") throw unexpected(outcome);
    return { sessionId: outcome.result.sessionId, ttlMs: outcome.result.ttlMs };
  }

  /** Renews a session's TTL (leader memory only). */
  async keepAlive(request: KeepAliveRequest): Promise<KeepAliveResponse> {
    await this.#leaderCaughtUp();
    this.#ensureLeader();
    const session = this.#machine.session(request.sessionId);
    if (session === null) {
      throw new SessionExpiredError(
        `Cannot keep session ${request.sessionId} alive as it is unknown, closed or expired`,
      );
    }
    this.#setSessionDeadline(request.sessionId, this.#monotonicMs() + session.ttlMs);
    return { sessionId: request.sessionId, ttlMs: session.ttlMs };
  }

  /** Closes a session, releasing its locks. */
  async closeSession(request: CloseSessionRequest): Promise<CloseSessionResponse> {
    const outcome = await this.#propose({
      type: "closeSession",
      nowMs: this.#nowMs(),
      sessionId: request.sessionId,
      requestId: request.requestId,
    });
    const error = resultError(outcome.result);
    if (error !== null) throw error;
    if (outcome.result.type !== "sessionClosed" && outcome.result.type !== "sessionExpired") {
      throw unexpected(outcome);
    }
    return { released: [...outcome.result.released] };
  }

  /**
   * Acquires a lock. With `wait`, resolves when granted, or fails with TIMEOUT,
   * CANCELLED (through `control.cancel`), SESSION_EXPIRED or NOT_LEADER.
   */
  acquire(request: AcquireRequest, control?: AcquireControl): Promise<AcquireResponse> {
    return new Promise((resolve, reject) => {
      const waiter: AcquireWaiter = {
        sessionId: request.sessionId,
        lock: request.lock,
        requestId: request.requestId,
        resolve,
        reject,
        done: false,
        cancelReason: null,
      };
      let queued = false;
      if (control !== undefined && request.wait) {
        control.cancel = () => {
          if (queued) this.#cancelWaiter(waiter, "CANCELLED");
          else waiter.cancelReason = "CANCELLED";
        };
      }
      this.#enqueueProposal(
        {
          type: "acquire",
          nowMs: this.#nowMs(),
          sessionId: request.sessionId,
          lock: request.lock,
          requestId: request.requestId,
          wait: request.wait,
        },
        (outcome) => {
          const result = outcome.result;
          if (result.type === "granted") {
            waiter.done = true;
            resolve({ acquired: true, token: result.token });
          } else if (result.type === "notAcquired") {
            waiter.done = true;
            resolve({ acquired: false, token: 0 });
          } else if (result.type === "queued") {
            queued = true;
            this.#registerWaiter(waiter, request.timeoutMs);
          } else {
            this.#rejectWaiter(waiter, resultError(result) ?? unexpected(outcome));
          }
        },
        (error) => this.#rejectWaiter(waiter, error),
      );
    });
  }

  #registerWaiter(waiter: AcquireWaiter, timeoutMs: number): void {
    const key = waiterKey(waiter.sessionId, waiter.lock);
    let set = this.#waiters.get(key);
    if (set === undefined) {
      set = new Set();
      this.#waiters.set(key, set);
    }
    set.add(waiter);
    if (waiter.cancelReason !== null) {
      const reason = waiter.cancelReason;
      waiter.cancelReason = null;
      this.#cancelWaiter(waiter, reason);
    } else if (timeoutMs > 0) {
      this.#acquireDeadlines.push(this.#monotonicMs() + timeoutMs, waiter);
    }
  }

  /**
   * Withdraws a waiting acquire: proposes cancelWait and answers by its result. The
   * session has one place in the lock's queue however many of its calls wait there, so
   * while another call of the same session still waits for the lock, only this call is
   * answered and the place is kept (one caller's timeout or cancel must not end another
   * caller's wait).
   */
  #cancelWaiter(waiter: AcquireWaiter, reason: "TIMEOUT" | "CANCELLED"): void {
    if (waiter.done || waiter.cancelReason !== null) return;
    const failure = reason === "TIMEOUT"
      ? new TimeoutError(`Cannot acquire lock ${JSON.stringify(waiter.lock)} within the timeout`)
      : new DlockError(
        "CANCELLED",
        `The acquire of lock ${JSON.stringify(waiter.lock)} was cancelled`,
      );
    const set = this.#waiters.get(waiterKey(waiter.sessionId, waiter.lock));
    if (set !== undefined && set.has(waiter)) {
      const stillWaiting = [...set].some((other) =>
        other !== waiter && !other.done && other.cancelReason === null
      );
      if (stillWaiting) {
        set.delete(waiter);
        this.#rejectWaiter(waiter, failure);
        return;
      }
    }
    waiter.cancelReason = reason;
    try {
      this.#enqueueProposal(
        {
          type: "cancelWait",
          nowMs: this.#nowMs(),
          sessionId: waiter.sessionId,
          lock: waiter.lock,
          requestId: waiter.requestId,
        },
        (outcome) => {
          const result = outcome.result;
          if (result.type === "granted") {
            this.#answerWaiters(waiter.sessionId, waiter.lock, {
              acquired: true,
              token: result.token,
            }, null);
            if (!waiter.done) {
              waiter.done = true;
              waiter.resolve({ acquired: true, token: result.token });
            }
          } else {
            const error = result.type === "error" ? resultError(result) ?? failure : failure;
            this.#answerWaiters(waiter.sessionId, waiter.lock, null, error);
            this.#rejectWaiter(waiter, error);
          }
        },
        (error) => this.#rejectWaiter(waiter, error),
      );
    } catch (error) {
      this.#rejectWaiter(waiter, error instanceof DlockError ? error : failure);
    }
  }

  /** Releases a lock. */
  async release(request: ReleaseRequest): Promise<ReleaseResponse> {
    const command: LockCommand = request.token === 0
      ? {
        type: "release",
        nowMs: this.#nowMs(),
        sessionId: request.sessionId,
        lock: request.lock,
        requestId: request.requestId,
      }
      : {
        type: "release",
        nowMs: this.#nowMs(),
        sessionId: request.sessionId,
        lock: request.lock,
        requestId: request.requestId,
        token: request.token,
      };
    const outcome = await this.#propose(command);
    const error = resultError(outcome.result);
    if (error !== null) throw error;
    if (outcome.result.type !== "released") throw unexpected(outcome);
    return { released: true };
  }

  /**
   * Fenced append: checks linearizably that the session holds the lock with the
   * token, then forwards to the filewriter with the fence.
   */
  async append(request: AppendRequest): Promise<AppendResponse> {
    const filewriter = this.#options.filewriter;
    if (filewriter === null) {
      throw new DlockError(
        "UNAVAILABLE",
        "Cannot append as this server has no filewriter configured",
      );
    }
    await this.#linearizableRead();
    if (this.#machine.session(request.sessionId) === null) {
      throw new SessionExpiredError(
        `Cannot append as session ${request.sessionId} is unknown, closed or expired`,
      );
    }
    const holder = this.#machine.holder(request.lock);
    if (
      holder === null || holder.sessionId !== request.sessionId || holder.token !== request.token
    ) {
      throw new NotHolderError(
        `Cannot append as session ${request.sessionId} does not hold lock ${
          JSON.stringify(request.lock)
        } with token ${request.token}`,
      );
    }
    try {
      const result = await filewriter.append({
        file: request.file,
        lock: request.lock,
        token: request.token,
        requestId: request.requestId,
        data: request.data,
      });
      return { offset: result.offset, duplicate: result.duplicate };
    } catch (error) {
      throw filewriterFailure(request.file, this.#options.filewriterAddress, error);
    }
  }

  /** This server's view of the cluster and the lock state (any role; not linearizable). */
  status(request: StatusRequest): StatusResponse {
    const raft = this.#raft.status();
    const counts = this.#machine.counts();
    const leader = this.#leader ?? "";
    return {
      self: this.#options.self,
      role: this.#role,
      leader,
      term: raft.term,
      commitIndex: raft.commit,
      appliedIndex: this.#appliedIndex,
      members: [...this.#options.members].map((address) => {
        const heardMs = this.#lastHeardMs.get(address);
        return {
          address,
          isLeader: address === leader,
          isSelf: address === this.#options.self,
          contactKnown: heardMs !== undefined && address !== this.#options.self,
          lastContactMsAgo: heardMs === undefined
            ? 0
            : Math.max(0, Math.round(this.#monotonicMs() - heardMs)),
          matchIndex: this.#role === "leader" ? this.#matchIndex.get(address) ?? 0 : 0,
        };
      }),
      sessions: this.#machine.sessions({ limit: request.locksLimit }).map((session) => ({
        id: session.id,
        clientName: session.clientName,
        ttlMs: session.ttlMs,
        held: session.held,
        waiting: session.waiting,
      })),
      locks: this.#machine.locks({ limit: request.locksLimit }).map((lock) => ({
        name: lock.name,
        holderSession: lock.holder.sessionId,
        holderName: lock.holder.clientName,
        token: lock.holder.token,
        waiters: lock.waiters.map((waiter) => ({
          sessionId: waiter.sessionId,
          clientName: waiter.clientName,
        })),
      })),
      lockCount: counts.locks,
      sessionCount: counts.sessions,
      filewriter: this.#options.filewriterAddress,
      electionTimeoutMs: this.#options.electionTimeoutMs ?? 0,
    };
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Hands leadership to the most up-to-date follower (when leader) and waits up to
   * `waitMs` for it to take over.
   */
  async transferLeadership(waitMs: number): Promise<boolean> {
    if (this.#role !== "leader" || this.#stopped) return false;
    let best: NodeId | null = null;
    let bestIndex = -1;
    for (const member of this.#options.members) {
      if (member === this.#options.self) continue;
      const match = this.#matchIndex.get(member) ?? 0;
      if (match > bestIndex) {
        best = member;
        bestIndex = match;
      }
    }
    if (best === null) return false;
    this.#log.info("transferring leadership before stopping", { to: best, matchIndex: bestIndex });
    this.#raft.transferLeadership(best);
    this.#schedule();
    const deadline = performance.now() + waitMs;
    while (performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      if (this.#role !== "leader") return true;
    }
    return false;
  }

  /** Stops the loop and fails everything in flight; the caller then closes storage. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#tickTimer);
    await this.#idle;
    await this.#compacting;
    this.#role = "follower";
    this.#lostLeadership();
    for (const proposal of this.#proposalQueue) {
      proposal.onFailed(
        new DlockError("UNAVAILABLE", "Cannot serve the request as the server is stopping"),
      );
    }
    this.#proposalQueue = [];
  }
}

function unexpected(outcome: ApplyOutcome): DlockError {
  return new DlockError(
    "UNAVAILABLE",
    `Cannot answer the request as the state machine returned an unexpected result: ${outcome.result.type}`,
  );
}

/**
 * The error of an append the filewriter did not take: its own typed refusals as they are
 * (stale fence, invalid input, overload), and anything that means "the filewriter is down"
 * as a {@link DownstreamUnavailableError}, so the client can say that this server answered
 * and the filewriter behind it did not.
 */
function filewriterFailure(file: string, address: string, error: unknown): DlockError {
  const down = error instanceof FilewriterUnavailableError ? error : null;
  if (down === null && error instanceof DlockError) return error;
  const problem = down?.problem ?? (error instanceof Error ? error.message : String(error));
  const attempts = down?.attempts ?? 1;
  const unreachable = down?.unreachable ?? true;
  return new DownstreamUnavailableError(
    `Cannot append to ${file} as the filewriter at ${address} is ${
      unreachable ? "unreachable" : "failing"
    } (tried ${attempts} ${attempts === 1 ? "time" : "times"}): ${problem}`,
    { service: "filewriter", address, attempts, unreachable, problem },
    null,
    { cause: error },
  );
}
