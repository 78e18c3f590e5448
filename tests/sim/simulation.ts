/**
 * Deterministic simulation of a dlock Raft cluster (TigerBeetle's VOPR, FoundationDB's
 * simulator): N cores in one process, a simulated network that loses, duplicates,
 * delays, reorders and partitions, disks that keep only what was persisted in the Ready
 * order, crashes and restarts, process pauses (missed ticks are caught up on resume),
 * uneven tick rates, clients writing, reading and moving leadership. Every
 * choice is drawn from one seeded PRNG, so a run is a pure function of (seed, steps).
 *
 * Safety properties are checked as the run goes (every state change of a core surfaces
 * in a Ready, and every Ready is checked when it is carried out):
 * - election safety: at most one leader per term, across the whole run;
 * - log matching: an (index, term) pair denotes one entry with one predecessor term;
 * - leader completeness: a new leader's log holds every entry committed in earlier terms;
 * - state-machine safety: the same entry and the same machine digest at each index on
 *   every node, applied contiguously;
 * - persisted state: term never decreases, a vote never changes within a term, the
 *   commit index never regresses and never passes the persisted log;
 * - durability: a granted vote and acknowledged entries are on disk before the message
 *   leaves, and only entries known committed on disk are applied; only a leader's
 *   appends of a term already on disk leave before the disk write (thesis §10.2.1), and
 *   disks may be slow: the node keeps stepping messages and ticks while a write is in
 *   progress, and a crash in that window loses the write;
 * - linearizable reads: a read index covers every write acknowledged (and every entry
 *   known committed) before the read started;
 * - with the lock state machine: mutual exclusion and strictly increasing fencing tokens;
 * - liveness: after the faults heal (a majority up and connected), a leader is elected
 *   and a proposal commits within a bounded time.
 *
 * @module
 */

import {
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  RaftNode,
  type RaftOptions,
  type Ready,
  type Role,
  type Snapshot,
} from "../../src/raft/mod.ts";
import { EventHeap } from "./heap.ts";
import { LockMachineFactory } from "./lock_machine.ts";
import { SimViolation } from "./violation.ts";
import { Random } from "./random.ts";
import {
  hashChainKvFactory,
  type SimStateMachine,
  type SimStateMachineFactory,
} from "./state_machine.ts";

export { SimViolation };

/** Parameters drawn from the seed (printed with a failure). */
export interface SimParameters {
  readonly nodeCount: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly readMode: "safe" | "lease";
  readonly leaseDriftTicks: number;
  readonly entriesPerAppendMax: number;
  readonly bytesPerAppendMax: number;
  readonly inflightAppendsMax: number;
  /** The application snapshots and compacts every this many applied entries. */
  readonly snapshotEvery: number;
  /** Tick period of each node, in time units (uneven rates). */
  readonly tickPeriods: readonly number[];
}

/** What the disk of one node holds: exactly what was persisted. */
export interface Disk {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

interface Write {
  readonly node: NodeId;
  readonly index: number;
  readonly term: number;
  readonly data: Uint8Array;
  readonly marker: boolean;
}

interface Read {
  readonly requestId: string;
  /** Highest index of a write acknowledged before the read started. */
  readonly ackedBefore: number;
  index: number;
}

/** One simulated server. Volatile fields are lost in a crash; `disk` is not. */
export interface SimNode {
  readonly id: NodeId;
  readonly tickPeriod: number;
  up: boolean;
  raft: RaftNode | null;
  machine: SimStateMachine | null;
  readonly disk: Disk;
  applied: number;
  appliedTerm: number;
  role: Role;
  term: number;
  leader: NodeId | null;
  writes: Map<number, Write>;
  reads: Map<string, Read>;
  readsWaiting: Read[];
  /** A paused process (GC, stop signal): it neither ticks nor handles messages until then. */
  pausedUntil: number;
  /** Ticks missed while paused; done in a burst on resume, as a monotonic clock would. */
  missedTicks: number;
  /** A Ready whose disk write is in progress (slow or held disk); lost in a crash. */
  pendingReady: Ready | null;
  /** The Ready whose committed entries were applied before its write (see processReady). */
  appliedEarly: Ready | null;
  /** Identifies the write in progress, so a completion event of an older one is ignored. */
  pendingWrite: number;
  /** Manual mode: the disk holds every write until `releaseDisk`. */
  diskHeld: boolean;
}

type EventKind =
  | "tick"
  | "deliver"
  | "client"
  | "fault"
  | "leaderFault"
  | "resume"
  | "diskDone";

interface SimEvent {
  readonly time: number;
  readonly sequence: number;
  readonly kind: EventKind;
  readonly node?: NodeId;
  readonly message?: Message;
  readonly term?: number;
}

interface TraceRecord {
  readonly step: number;
  readonly time: number;
  readonly what: string | Message;
  readonly node: NodeId | undefined;
}

/** Counters reported per run. */
export interface SimStats {
  steps: number;
  time: number;
  messagesSent: number;
  messagesDropped: number;
  elections: number;
  maxTerm: number;
  commitIndex: number;
  writesAcknowledged: number;
  readsServed: number;
  readsFailed: number;
  crashes: number;
  snapshotsInstalled: number;
  compactions: number;
  transfers: number;
  calmPeriods: number;
  /** Disk writes that stayed in progress while the node handled other events. */
  slowWrites: number;
  /** Crashes after a leader's early appends left but before its disk write. */
  crashesBeforePersist: number;
  /** A leader's write completed after its entries were already committed by followers. */
  commitsBeforeLeaderPersist: number;
  /** Entries applied before the write of the same Ready's newer entries (the early path). */
  appliedBeforeWrite: number;
  /** Entries applied while their node's write was in progress (takeCommittedEarly). */
  appliedDuringWrite: number;
  /** A leader's appends sent while its write was in progress (takeEarlyMessages). */
  sentDuringWrite: number;
}

/** Options of one run. */
export interface SimulationOptions {
  readonly seed: number;
  /** Random mode: events to run before the final calm period. */
  readonly steps?: number;
  /** Overrides the node count drawn from the seed. */
  readonly nodes?: number;
  readonly stateMachine?: SimStateMachineFactory;
  /** Manual mode (scenarios): no random ticks, faults or clients; no loss or delay. */
  readonly manual?: boolean;
  /** Overrides parameters drawn from the seed. */
  readonly parameters?: Partial<SimParameters>;
  readonly traceLength?: number;
}

const timePerTickBase = 100;

/** Draws the run's parameters from the seed. */
export function drawParameters(random: Random, nodes: number | undefined): SimParameters {
  const nodeCount = nodes ?? random.pick([1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5, 5, 5, 5, 5, 5, 7, 7, 7]);
  const electionTicks = random.range(6, 16);
  const heartbeatTicks = random.range(1, Math.max(1, Math.floor(electionTicks / 3)));
  const checkQuorum = random.chance(0.85);
  const readMode = checkQuorum && random.chance(0.4) ? "lease" : "safe";
  // Lease reads are only safe under bounded clock drift: keep the rates within 5% and
  // allow for it (see RaftNode.leaseValid).
  const tickPeriods: number[] = [];
  for (let k = 0; k < nodeCount; k++) {
    tickPeriods.push(
      readMode === "lease" ? random.range(95, 105) : random.range(60, 140),
    );
  }
  return {
    nodeCount,
    electionTicks,
    heartbeatTicks,
    preVote: random.chance(0.85),
    checkQuorum,
    readMode,
    leaseDriftTicks: readMode === "lease" ? Math.ceil(electionTicks * 0.1) + 1 : 1,
    entriesPerAppendMax: random.pick([1, 2, 4, 16, 64]),
    bytesPerAppendMax: random.pick([64, 1024, 1 << 20]),
    inflightAppendsMax: random.pick([1, 2, 4, 16]),
    snapshotEvery: random.range(3, 40),
    tickPeriods,
  };
}

/** The simulator. See the module documentation. */
export class Simulation {
  readonly seed: number;
  readonly parameters: SimParameters;
  readonly ids: NodeId[];
  readonly nodes = new Map<NodeId, SimNode>();
  readonly stats: SimStats;
  private readonly random: Random;
  private readonly factory: SimStateMachineFactory;
  private readonly manual: boolean;
  private readonly heap = new EventHeap<SimEvent>();
  private sequence = 0;
  now = 0;
  private step = 0;

  // Network state.
  private readonly blocked = new Set<string>();
  private lossRate = 0;
  private duplicateRate = 0;
  private delayMax = 20;
  private longDelayRate = 0;

  // Checker state.
  private readonly leaderOfTerm = new Map<number, NodeId>();
  /** committed[i]: the entry committed at index i (as first seen). */
  private readonly committed: (Entry | undefined)[] = [];
  /**
   * committedTerm[i]: the term of the first node seen persisting or applying index i as
   * committed. The entry was committed in that term or an earlier one.
   */
  private readonly committedTerm: number[] = [];
  private committedMax = 0;
  private readonly digestAt: (string | undefined)[] = [];
  /** index → term → predecessor term, for log matching. */
  private readonly logRegistry = new Map<
    number,
    Map<number, { entry: Entry; previousTerm: number }>
  >();
  private ackedMaxIndex = 0;
  /** Outcome of each read (manual mode only, for scenario expectations). */
  readonly readOutcomes = new Map<string, "pending" | "served" | "failed">();

  // Driver state.
  private phase: "chaos" | "calm" = "chaos";
  private phaseEndTime = 0;
  private calmDeadline = 0;
  private calmStart = 0;
  private marker: Write | null = null;
  private markerCount = 0;
  private writeCount = 0;
  private readCount = 0;
  private readonly healthy = new Set<NodeId>();
  /** Drawn per seed: some runs have bursts of faults, others few. */
  private readonly faultIntervalMax: number;
  private readonly earlyLeaderFaultRate: number;
  private readonly clientIntervalMax: number;
  /** Drawn per seed: the share of disk writes that take a while, and how long at most. */
  private readonly slowDiskRate: number;
  private readonly diskDelayMax: number;
  private writeSequence = 0;

  private readonly trace: TraceRecord[] = [];
  private readonly traceLength: number;
  private traceNext = 0;

  constructor(options: SimulationOptions) {
    this.seed = options.seed;
    this.random = new Random(options.seed);
    this.factory = options.stateMachine ?? hashChainKvFactory;
    this.manual = options.manual ?? false;
    this.traceLength = options.traceLength ?? 200;
    this.parameters = { ...drawParameters(this.random, options.nodes), ...options.parameters };
    if (
      options.parameters?.nodeCount !== undefined && options.parameters.tickPeriods === undefined
    ) {
      this.parameters = {
        ...this.parameters,
        tickPeriods: Array.from({ length: this.parameters.nodeCount }, () => timePerTickBase),
      };
    }
    this.faultIntervalMax = this.random.pick([200, 500, 1000, 2000]);
    this.earlyLeaderFaultRate = this.random.pick([0, 0.1, 0.3]);
    this.clientIntervalMax = this.random.pick([30, 100, 300]);
    this.slowDiskRate = this.manual ? 0 : this.random.pick([0, 0.2, 0.6, 1]);
    this.diskDelayMax = this.random.pick([5, 20, 60]);
    this.ids = Array.from({ length: this.parameters.nodeCount }, (_, k) => String(k + 1));
    this.stats = {
      steps: 0,
      time: 0,
      messagesSent: 0,
      messagesDropped: 0,
      elections: 0,
      maxTerm: 0,
      commitIndex: 0,
      writesAcknowledged: 0,
      readsServed: 0,
      readsFailed: 0,
      crashes: 0,
      snapshotsInstalled: 0,
      compactions: 0,
      transfers: 0,
      calmPeriods: 0,
      slowWrites: 0,
      crashesBeforePersist: 0,
      commitsBeforeLeaderPersist: 0,
      appliedBeforeWrite: 0,
      appliedDuringWrite: 0,
      sentDuringWrite: 0,
    };
    for (const [k, id] of this.ids.entries()) {
      const node: SimNode = {
        id,
        tickPeriod: this.parameters.tickPeriods[k] ?? timePerTickBase,
        up: false,
        raft: null,
        machine: null,
        disk: { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] },
        applied: 0,
        appliedTerm: 0,
        role: "follower",
        term: 0,
        leader: null,
        writes: new Map(),
        reads: new Map(),
        readsWaiting: [],
        pausedUntil: 0,
        missedTicks: 0,
        pendingReady: null,
        appliedEarly: null,
        pendingWrite: 0,
        diskHeld: false,
      };
      this.nodes.set(id, node);
    }
    for (const id of this.ids) this.restart(id);
    if (!this.manual) {
      for (const id of this.ids) {
        const node = this.node(id);
        this.schedule(this.random.int(node.tickPeriod) + 1, "tick", id);
      }
      this.schedule(this.random.range(10, 200), "client");
      this.schedule(this.random.range(50, 500), "fault");
      this.phaseEndTime = this.random.range(2000, 8000);
    }
  }

  // ------------------------------------------------------------------ random mode

  /**
   * Runs `steps` events with faults, then a final calm period that must satisfy
   * liveness.
   * @throws {SimViolation} at the first broken property.
   */
  run(steps: number): void {
    for (let k = 0; k < steps; k++) this.runEvent();
    if (this.phase === "chaos") this.startCalm();
    const stepsMax = steps + 1_000_000;
    while (this.phase === "calm") {
      this.runEvent();
      if (this.step > stepsMax) throw new SimViolation("liveness", "final calm period did not end");
    }
  }

  private runEvent(): void {
    const event = this.heap.pop();
    if (event === undefined) throw new SimViolation("simulator", "no events left");
    this.step++;
    this.stats.steps = this.step;
    this.now = event.time;
    this.stats.time = this.now;
    switch (event.kind) {
      case "tick":
        this.onTick(event.node!);
        break;
      case "deliver":
        this.deliver(event.message!);
        break;
      case "client":
        this.onClient();
        this.schedule(this.random.range(5, this.clientIntervalMax), "client");
        break;
      case "resume":
        this.onResume(event.node!);
        break;
      case "diskDone":
        // The write's id rides in the event's `term` field.
        this.onDiskDone(event.node!, event.term!);
        break;
      case "leaderFault":
        this.onLeaderFault(event.node!, event.term!);
        break;
      case "fault":
        this.onFault();
        this.schedule(this.random.range(20, this.faultIntervalMax), "fault");
        break;
    }
    if (this.phase === "calm") this.checkLiveness();
  }

  private schedule(
    delay: number,
    kind: EventKind,
    node?: NodeId,
    message?: Message,
    term?: number,
  ): void {
    this.heap.push({
      time: this.now + delay,
      sequence: this.sequence++,
      kind,
      ...(node === undefined ? {} : { node }),
      ...(message === undefined ? {} : { message }),
      ...(term === undefined ? {} : { term }),
    });
  }

  /** Pauses a process: no ticks, no messages, no clients until it resumes. */
  pause(id: NodeId, duration: number): void {
    const node = this.node(id);
    if (!node.up || this.now < node.pausedUntil) return;
    node.pausedUntil = this.now + duration;
    node.missedTicks = 0;
    this.record(`pause for ${duration}`, id);
    this.schedule(duration, "resume", id);
  }

  /** The process runs again: first the ticks it missed, then everything else. */
  private onResume(id: NodeId): void {
    const node = this.node(id);
    if (!node.up || node.pausedUntil === 0 || this.now < node.pausedUntil) return;
    this.record(`resume with ${node.missedTicks} missed ticks`, id);
    node.pausedUntil = 0;
    const raft = node.raft!;
    for (; node.missedTicks > 0; node.missedTicks--) raft.tick();
    this.processReady(node);
  }

  private paused(id: NodeId): boolean {
    return this.now < this.node(id).pausedUntil;
  }

  /** A leader fails soon after its election, with its first appends still in flight. */
  private onLeaderFault(id: NodeId, term: number): void {
    const node = this.node(id);
    if (this.phase === "calm" || !node.up || node.role !== "leader" || node.term !== term) return;
    if (this.random.chance(0.5)) this.crash(id);
    else this.isolate(id);
  }

  private onTick(id: NodeId): void {
    const node = this.node(id);
    this.schedule(node.tickPeriod, "tick", id);
    if (!node.up) return;
    if (this.now < node.pausedUntil) {
      node.missedTicks++;
      return;
    }
    this.record("tick", id);
    node.raft!.tick();
    this.processReady(node);
  }

  private onClient(): void {
    const up = this.ids.filter((id) => this.node(id).up && !this.paused(id));
    if (up.length === 0) return;
    const choice = this.random.float();
    if (choice < 0.65) {
      const leaders = up.filter((id) => this.node(id).role === "leader");
      const target = leaders.length > 0 && this.random.chance(0.9)
        ? this.random.pick(leaders)
        : this.random.pick(up);
      this.propose(target, `k${this.random.int(8)}`, `w${++this.writeCount}`);
    } else if (choice < 0.9) {
      this.read(this.random.pick(up));
    } else if (choice < 0.95) {
      if (this.phase === "calm") return;
      const leaders = up.filter((id) => this.node(id).role === "leader");
      if (leaders.length === 0 || this.ids.length === 1) return;
      const from = this.random.pick(leaders);
      this.transfer(from, this.random.pick(this.ids.filter((id) => id !== from)));
    } else {
      if (this.phase === "calm") return;
      this.campaign(this.random.pick(up));
    }
  }

  private onFault(): void {
    if (this.phase === "calm") return;
    if (this.now >= this.phaseEndTime) {
      this.startCalm();
      return;
    }
    const leaders = this.ids.filter((id) => this.node(id).up && this.node(id).role === "leader");
    if (leaders.length > 0 && this.random.chance(0.3)) {
      // Targeted faults hit the leader while it has entries in flight: the interleavings
      // behind figure 8 and most conflict resolution need leaders to fail mid-replication.
      const leader = this.random.pick(leaders);
      const choice = this.random.float();
      if (choice < 0.4) this.crash(leader);
      else if (choice < 0.65) this.isolate(leader);
      else if (choice < 0.8) this.pause(leader, this.random.range(100, 3000));
      else {
        const others = this.shuffle(this.ids.filter((id) => id !== leader));
        const minority = others.slice(0, Math.floor((this.ids.length - 1) / 2));
        this.partition([[leader, ...minority], others.slice(minority.length)]);
      }
      return;
    }
    const choice = this.random.float();
    if (choice < 0.2) {
      const shuffled = this.shuffle(this.ids);
      const cut = this.random.range(1, Math.max(1, shuffled.length - 1));
      this.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
    } else if (choice < 0.3) {
      const from = this.random.pick(this.ids);
      const to = this.random.pick(this.ids);
      if (from !== to) {
        this.blocked.add(`${from}>${to}`);
        this.record(`block ${from}>${to}`);
      }
    } else if (choice < 0.42) {
      const id = this.random.pick(this.ids);
      this.partition([[id], this.ids.filter((other) => other !== id)]);
    } else if (choice < 0.6) {
      this.heal();
    } else if (choice < 0.75) {
      const up = this.ids.filter((id) => this.node(id).up);
      if (up.length > 0) this.crash(this.random.pick(up));
    } else if (choice < 0.85) {
      const down = this.ids.filter((id) => !this.node(id).up);
      if (down.length > 0) this.restart(this.random.pick(down));
    } else if (choice < 0.87) {
      const up = this.ids.filter((id) => this.node(id).up);
      if (up.length > 0) this.pause(this.random.pick(up), this.random.range(100, 3000));
    } else if (choice < 0.9) {
      // A quick reboot: the node comes back at once with only what is on its disk.
      const up = this.ids.filter((id) => this.node(id).up);
      if (up.length > 0) {
        const id = this.random.pick(up);
        this.crash(id);
        this.restart(id);
      }
    } else {
      this.lossRate = this.random.pick([0, 0, 0.01, 0.05, 0.2]);
      this.duplicateRate = this.random.pick([0, 0.01, 0.05]);
      this.delayMax = this.random.pick([5, 20, 60, 150]);
      this.longDelayRate = this.random.pick([0, 0.01, 0.05]);
      this.record(
        `network loss=${this.lossRate} duplicate=${this.duplicateRate} delayMax=${this.delayMax} long=${this.longDelayRate}`,
      );
    }
  }

  /** Heals the network, restarts nodes (maybe leaving a minority out) and expects progress. */
  private startCalm(): void {
    this.phase = "calm";
    this.calmStart = this.now;
    this.stats.calmPeriods++;
    this.heal();
    this.lossRate = 0;
    this.duplicateRate = 0;
    this.longDelayRate = 0;
    this.delayMax = this.random.pick([5, 20, 40]);
    const out = new Set<NodeId>();
    if (this.random.chance(0.4)) {
      const minority = this.random.range(0, Math.floor((this.ids.length - 1) / 2));
      for (const id of this.shuffle(this.ids).slice(0, minority)) out.add(id);
    }
    this.healthy.clear();
    for (const id of this.ids) {
      const node = this.node(id);
      if (out.has(id)) {
        if (this.random.chance(0.5)) {
          if (node.up) this.crash(id);
        } else {
          if (!node.up) this.restart(id);
          this.isolate(id);
        }
      } else {
        this.healthy.add(id);
        if (!node.up) this.restart(id);
      }
    }
    const slowestPeriod = Math.max(...this.parameters.tickPeriods);
    this.calmDeadline = this.now + 40 * 2 * this.parameters.electionTicks * slowestPeriod;
    this.marker = null;
    this.record(`calm until progress; out=[${[...out].join(",")}] deadline=${this.calmDeadline}`);
  }

  /** In a calm period: get a marker entry committed through a healthy leader. */
  private checkLiveness(): void {
    if (this.now > this.calmDeadline) {
      const leaders = [...this.healthy].filter((id) => this.node(id).role === "leader");
      throw new SimViolation(
        "liveness",
        `no ${leaders.length === 0 ? "leader elected" : "proposal committed"} within ${
          this.now - this.calmStart
        } time units of healing (healthy: ${[...this.healthy].join(",")}; leaders: ${
          leaders.join(",")
        })`,
      );
    }
    const marker = this.marker;
    if (marker !== null) {
      const node = this.node(marker.node);
      if (node.up && node.role === "leader" && node.term === marker.term) return;
      this.marker = null; // Lost leadership: propose again through the next leader.
    }
    for (const id of this.healthy) {
      const node = this.node(id);
      if (!node.up || node.role !== "leader" || this.paused(id)) continue;
      const data = this.factory.write("marker", `m${++this.markerCount}`, this.random);
      const result = node.raft!.propose(data);
      if (!result.ok) return;
      this.marker = { node: id, index: result.index, term: result.term, data, marker: true };
      node.writes.set(result.index, this.marker);
      this.processReady(node);
      return;
    }
  }

  private markerCommitted(): void {
    this.record("calm period ends: leader elected and marker committed");
    this.phase = "chaos";
    this.marker = null;
    this.phaseEndTime = this.now + this.random.range(2000, 8000);
  }

  private shuffle<T>(items: readonly T[]): T[] {
    const result = [...items];
    for (let k = result.length - 1; k > 0; k--) {
      const other = this.random.int(k + 1);
      [result[k], result[other]] = [result[other]!, result[k]!];
    }
    return result;
  }

  // ------------------------------------------------------------------ actions (both modes)

  node(id: NodeId): SimNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`Cannot find node ${id}`);
    return node;
  }

  /** Proposes `key=value` at `id`; returns the index or null when refused. */
  propose(id: NodeId, key: string, value: string): number | null {
    const node = this.node(id);
    if (!node.up) return null;
    const data = this.factory.write(key, value, this.random);
    const result = node.raft!.propose(data);
    this.record(
      `propose ${key}=${value} -> ${result.ok ? `index ${result.index}` : result.reason}`,
      id,
    );
    if (!result.ok) return null;
    node.writes.set(result.index, {
      node: id,
      index: result.index,
      term: result.term,
      data,
      marker: false,
    });
    this.processReady(node);
    return result.index;
  }

  /** Starts a linearizable read at `id`. */
  read(id: NodeId): string {
    const node = this.node(id);
    const requestId = `r${++this.readCount}`;
    if (!node.up) return requestId;
    if (this.manual) this.readOutcomes.set(requestId, "pending");
    // Linearizability: the read must reflect every write acknowledged before it started.
    // A correct ReadIndex even reflects every entry committed anywhere before it started
    // (a confirmed leader's commit index covers them), which catches stale reads without
    // waiting for a client to observe a newer write.
    const before = Math.max(this.ackedMaxIndex, this.committedMax);
    node.reads.set(requestId, { requestId, ackedBefore: before, index: 0 });
    this.record(`read ${requestId} (must see index ${before})`, id);
    node.raft!.readIndex(requestId);
    this.processReady(node);
    return requestId;
  }

  transfer(from: NodeId, to: NodeId): void {
    const node = this.node(from);
    if (!node.up) return;
    this.stats.transfers++;
    this.record(`transfer leadership to ${to}`, from);
    node.raft!.transferLeadership(to);
    this.processReady(node);
  }

  campaign(id: NodeId): void {
    const node = this.node(id);
    if (!node.up) return;
    this.record("campaign", id);
    node.raft!.campaign();
    this.processReady(node);
  }

  /** Ticks one node once (manual mode). */
  tickNode(id: NodeId): void {
    const node = this.node(id);
    if (!node.up) return;
    this.step++;
    this.record("tick", id);
    node.raft!.tick();
    this.processReady(node);
  }

  /** Blocks every link between different groups. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    this.blocked.clear();
    for (const [k, group] of groups.entries()) {
      for (const [j, other] of groups.entries()) {
        if (k === j) continue;
        for (const from of group) for (const to of other) this.blocked.add(`${from}>${to}`);
      }
    }
    this.record(`partition ${groups.map((group) => group.join(",")).join("|")}`);
  }

  /** Cuts `id` off from every other node (keeping other blocks). */
  isolate(id: NodeId): void {
    for (const other of this.ids) {
      if (other === id) continue;
      this.blocked.add(`${id}>${other}`);
      this.blocked.add(`${other}>${id}`);
    }
    this.record(`isolate ${id}`);
  }

  /** Blocks messages from `from` to `to` only. */
  block(from: NodeId, to: NodeId): void {
    this.blocked.add(`${from}>${to}`);
    this.record(`block ${from}>${to}`);
  }

  heal(): void {
    this.blocked.clear();
    this.record("heal");
  }

  /** Crashes a node: everything not on its disk is lost. */
  crash(id: NodeId): void {
    const node = this.node(id);
    if (!node.up) return;
    this.stats.crashes++;
    this.record("crash", id);
    node.up = false;
    node.pausedUntil = 0;
    node.missedTicks = 0;
    node.pendingReady = null;
    node.appliedEarly = null;
    node.diskHeld = false; // It comes back with a working disk.
    node.raft = null;
    node.machine = null;
    node.writes.clear();
    node.reads.clear();
    node.readsWaiting = [];
    node.role = "follower";
    node.leader = null;
  }

  /** Restarts a node from its disk. */
  restart(id: NodeId): void {
    const node = this.node(id);
    if (node.up) return;
    const disk = node.disk;
    this.record(
      `restart from disk (term ${disk.hardState.term}, commit ${disk.hardState.commit}, ${
        disk.snapshot === null ? "no snapshot" : `snapshot ${disk.snapshot.meta.index}`
      }, ${disk.entries.length} entries)`,
      id,
    );
    const options: RaftOptions = {
      id,
      voters: this.ids,
      electionTicks: this.parameters.electionTicks,
      heartbeatTicks: this.parameters.heartbeatTicks,
      preVote: this.parameters.preVote,
      checkQuorum: this.parameters.checkQuorum,
      entriesPerAppendMax: this.parameters.entriesPerAppendMax,
      bytesPerAppendMax: this.parameters.bytesPerAppendMax,
      inflightAppendsMax: this.parameters.inflightAppendsMax,
      readMode: this.parameters.readMode,
      leaseDriftTicks: this.parameters.leaseDriftTicks,
      random: this.random.fork().floatSource(),
    };
    node.raft = new RaftNode(options, {
      hardState: disk.hardState,
      snapshot: disk.snapshot,
      entries: disk.entries.slice(),
    });
    node.up = true;
    if (disk.snapshot === null) {
      node.machine = this.factory.create();
      node.applied = 0;
      node.appliedTerm = 0;
    } else {
      node.machine = this.factory.restore(disk.snapshot.data);
      node.applied = disk.snapshot.meta.index;
      node.appliedTerm = disk.snapshot.meta.term;
      this.checkDigest(node, node.applied);
    }
    node.role = "follower";
    node.term = disk.hardState.term;
    node.leader = null;
    this.processReady(node);
  }

  /** Delivers every message in flight, in order, until none is left (manual mode). */
  stabilize(messagesMax = 100_000): void {
    for (let k = 0; k < messagesMax; k++) {
      const event = this.heap.pop();
      if (event === undefined) return;
      this.step++;
      if (event.kind === "deliver") this.deliver(event.message!);
    }
    throw new SimViolation("simulator", "stabilize did not converge");
  }

  /** Node ids that currently believe they are leader. */
  leaders(): NodeId[] {
    return this.ids.filter((id) => this.node(id).up && this.node(id).role === "leader");
  }

  /** Entries applied by a node, as the machine's digest. */
  digestOf(id: NodeId): string | null {
    return this.node(id).machine?.digest() ?? null;
  }

  readValue(id: NodeId, key: string): string | null {
    return this.node(id).machine?.read(key) ?? null;
  }

  // ------------------------------------------------------------------ network

  private send(message: Message): void {
    this.stats.messagesSent++;
    Object.freeze(message);
    this.checkDurableBeforeSend(message);
    if (this.manual) {
      this.heap.push({ time: this.now, sequence: this.sequence++, kind: "deliver", message });
      return;
    }
    if (this.lossRate > 0 && this.random.chance(this.lossRate)) {
      this.stats.messagesDropped++;
      return;
    }
    const copies = this.duplicateRate > 0 && this.random.chance(this.duplicateRate) ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) {
      const delay = this.longDelayRate > 0 && this.random.chance(this.longDelayRate)
        ? this.random.range(100, 2000)
        : this.random.range(1, this.delayMax);
      this.schedule(delay, "deliver", undefined, message);
    }
  }

  /**
   * What a message promises must be on the sender's disk before it leaves (the Ready
   * order): a granted vote, and the entries an append acknowledges. With a slow disk a
   * Ready gathers what several steps produced, so a response of term t may leave after a
   * later term was persisted in the same write; the later term supersedes the promise (the
   * node can never vote in t again, and only a later leader rewrote its log).
   */
  private checkDurableBeforeSend(message: Message): void {
    const disk = this.node(message.from).disk;
    if (message.type === "voteResp" && message.reject !== true) {
      if (
        disk.hardState.term < message.term ||
        (disk.hardState.term === message.term && disk.hardState.vote !== message.to)
      ) {
        throw new SimViolation(
          "durability",
          `node ${message.from} granted its vote in term ${message.term} to ${message.to} before persisting it`,
        );
      }
    } else if (
      message.type === "appendResp" && message.reject !== true && message.index !== undefined &&
      disk.hardState.term <= message.term
    ) {
      const last = (disk.snapshot?.meta.index ?? 0) + disk.entries.length;
      if (message.index > last) {
        throw new SimViolation(
          "durability",
          `node ${message.from} acknowledged index ${message.index} with only ${last} persisted`,
        );
      }
    }
  }

  private deliver(message: Message): void {
    const node = this.node(message.to);
    if (!node.up || this.blocked.has(`${message.from}>${message.to}`)) {
      this.stats.messagesDropped++;
      return;
    }
    if (this.now < node.pausedUntil) {
      // The message waits in the socket until the process runs again.
      this.schedule(
        node.pausedUntil - this.now + this.random.range(1, 5),
        "deliver",
        undefined,
        message,
      );
      return;
    }
    this.record(message, message.to);
    node.raft!.step(message);
    this.processReady(node);
  }

  // ------------------------------------------------------------------ Ready

  /**
   * Carries out every pending Ready of `node` in the documented order, checking as it
   * goes. A slow (or held) disk leaves the Ready's write in progress: its early messages
   * are out, the rest waits for `diskDone` while the node keeps handling events.
   */
  private processReady(node: SimNode): void {
    for (let round = 0; round < 1000 && node.up; round++) {
      if (node.pendingReady !== null) {
        this.duringWrite(node, node.pendingReady);
        return;
      }
      const raft = node.raft!;
      if (!raft.hasReady()) return;
      const ready = raft.ready();
      this.sendEarly(node, ready.messagesBeforePersist, ready);
      // As src/server/node.ts does: committed entries are durable on a majority, so in
      // the plain case (no snapshot, no role change) they are applied before this
      // Ready's own write of newer entries. The checks below (committed, digests,
      // acknowledged writes never lost across crashes) hold the result to that.
      if (ready.snapshot === undefined && ready.softState === undefined) {
        node.appliedEarly = ready;
        if (ready.entries.length > 0) {
          this.stats.appliedBeforeWrite += ready.committedEntries.length;
        }
        this.applyCommitted(node, ready.committedEntries, raft.status().commit);
      }
      if (!this.manual && this.phase === "chaos" && this.random.chance(0.001)) {
        // A crash before the disk write: any early appends are out, the write is lost.
        if (ready.messagesBeforePersist.length > 0) this.stats.crashesBeforePersist++;
        this.crash(node.id);
        return;
      }
      if (node.diskHeld || (this.slowDiskRate > 0 && this.random.chance(this.slowDiskRate))) {
        node.pendingReady = ready;
        node.pendingWrite = ++this.writeSequence;
        this.stats.slowWrites++;
        if (!node.diskHeld) {
          this.schedule(
            this.random.range(1, this.diskDelayMax),
            "diskDone",
            node.id,
            undefined,
            node.pendingWrite,
          );
        }
        return;
      }
      this.finishReady(node, ready);
    }
    if (node.up) throw new SimViolation("simulator", `node ${node.id} keeps producing Readies`);
  }

  /**
   * As src/server/node.ts does while a Ready's write is in progress (after each event
   * that reached the node): a leader's appends of entries proposed meanwhile go out at
   * once, and entries committed meanwhile are applied at once (after the Ready's own,
   * which a plain Ready applies before its write).
   */
  private duringWrite(node: SimNode, ready: Ready): void {
    const raft = node.raft!;
    const messages = raft.takeEarlyMessages();
    this.stats.sentDuringWrite += messages.length;
    this.sendEarly(node, messages, ready);
    if (node.appliedEarly !== ready) {
      if (raft.takeCommittedEarly().length > 0) {
        throw new SimViolation(
          "simulator",
          `node ${node.id} applies early after a non-plain Ready`,
        );
      }
      return;
    }
    const entries = raft.takeCommittedEarly();
    this.stats.appliedDuringWrite += entries.length;
    this.applyCommitted(node, entries, raft.status().commit);
  }

  /**
   * Sends messages before `ready`'s write completes (its step 0, or during the write):
   * only a leader's appends of a term already on disk may go early.
   */
  private sendEarly(node: SimNode, early: readonly Message[], ready: Ready): void {
    for (const message of early) {
      if (
        message.type !== "append" || message.from !== node.id ||
        message.term !== node.disk.hardState.term ||
        (ready.hardState !== undefined && ready.hardState.term !== message.term)
      ) {
        throw new SimViolation(
          "durability",
          `node ${node.id} sends ${
            describeMessage(message)
          } before persisting (term on disk ${node.disk.hardState.term})`,
        );
      }
      this.send(message);
    }
  }

  /** Steps 1-6 of the Ready, once its disk write completes. */
  private finishReady(node: SimNode, ready: Ready): void {
    const raft = node.raft!;
    this.persist(node, ready);
    // A crash here loses the messages and the application of this Ready, but not what
    // is on disk.
    if (!this.manual && this.phase === "chaos" && this.random.chance(0.0005)) {
      this.crash(node.id);
      return;
    }
    for (const message of ready.messages) this.send(message);
    this.apply(node, ready);
    raft.advance();
    this.maybeCompact(node);
    this.serveReads(node);
  }

  /** A slow disk write completed (unless the node crashed or was paused meanwhile). */
  private onDiskDone(id: NodeId, write: number): void {
    const node = this.node(id);
    const ready = node.pendingReady;
    if (!node.up || ready === null || node.pendingWrite !== write) return;
    if (this.now < node.pausedUntil) {
      // The write is done, but the process runs again only then.
      this.schedule(node.pausedUntil - this.now + 1, "diskDone", id, undefined, write);
      return;
    }
    node.pendingReady = null;
    const last = ready.entries[ready.entries.length - 1];
    if (
      ready.messagesBeforePersist.length > 0 && last !== undefined &&
      node.raft!.status().commit >= last.index
    ) {
      this.stats.commitsBeforeLeaderPersist++;
    }
    this.finishReady(node, ready);
    if (node.up) this.processReady(node);
  }

  /**
   * Manual mode: from now on `id`'s disk writes stay in progress until `releaseDisk` (or
   * a crash, which loses the write in progress).
   */
  holdDisk(id: NodeId): void {
    this.node(id).diskHeld = true;
    this.record("disk held", id);
  }

  /** Manual mode: completes `id`'s write in progress, if any, and stops holding. */
  releaseDisk(id: NodeId): void {
    const node = this.node(id);
    node.diskHeld = false;
    this.record("disk released", id);
    const ready = node.pendingReady;
    if (!node.up || ready === null) return;
    node.pendingReady = null;
    this.finishReady(node, ready);
    if (node.up) this.processReady(node);
  }

  private persist(node: SimNode, ready: Ready): void {
    const disk = node.disk;
    if (ready.softState !== undefined) this.onSoftState(node, ready);
    if (ready.snapshot !== undefined) {
      disk.snapshot = ready.snapshot;
      disk.entries = [];
    }
    const first = ready.entries[0];
    if (first !== undefined) {
      const base = disk.snapshot?.meta.index ?? 0;
      const keep = first.index - base - 1;
      if (keep < 0 || keep > disk.entries.length) {
        throw new SimViolation(
          "persisted log",
          `node ${node.id} persists entries from ${first.index} with ${disk.entries.length} entries after snapshot ${base}`,
        );
      }
      disk.entries.length = keep;
      for (const entry of ready.entries) {
        this.checkLogMatching(node, entry);
        disk.entries.push(entry);
      }
    }
    if (ready.hardState !== undefined) this.persistHardState(node, ready.hardState);
    else if (ready.snapshot !== undefined || first !== undefined) this.checkCommitWithinLog(node);
    if (ready.softState?.role === "leader") this.checkLeaderCompleteness(node);
  }

  private onSoftState(node: SimNode, ready: Ready): void {
    const soft = ready.softState!;
    node.role = soft.role;
    node.term = soft.term;
    node.leader = soft.leader;
    if (soft.term > this.stats.maxTerm) this.stats.maxTerm = soft.term;
    if (soft.role !== "leader") return;
    this.stats.elections++;
    this.record(`becomes leader of term ${soft.term}`, node.id);
    if (!this.manual && this.phase === "chaos" && this.random.chance(this.earlyLeaderFaultRate)) {
      this.schedule(this.random.range(1, 60), "leaderFault", node.id, undefined, soft.term);
    }
    const existing = this.leaderOfTerm.get(soft.term);
    if (existing !== undefined && existing !== node.id) {
      throw new SimViolation(
        "election safety",
        `term ${soft.term} has two leaders: ${existing} and ${node.id}`,
      );
    }
    this.leaderOfTerm.set(soft.term, node.id);
  }

  private persistHardState(node: SimNode, hardState: HardState): void {
    const previous = node.disk.hardState;
    if (hardState.term < previous.term) {
      throw new SimViolation(
        "persisted state",
        `node ${node.id} term went from ${previous.term} to ${hardState.term}`,
      );
    }
    if (
      hardState.term === previous.term && previous.vote !== null && hardState.vote !== previous.vote
    ) {
      throw new SimViolation(
        "persisted state",
        `node ${node.id} changed its vote in term ${hardState.term} from ${previous.vote} to ${hardState.vote}`,
      );
    }
    if (hardState.commit < previous.commit) {
      throw new SimViolation(
        "persisted state",
        `node ${node.id} commit went from ${previous.commit} to ${hardState.commit}`,
      );
    }
    node.disk.hardState = hardState;
    this.checkCommitWithinLog(node);
    // Register what this commit index covers.
    const base = node.disk.snapshot?.meta.index ?? 0;
    for (let index = Math.max(previous.commit, base) + 1; index <= hardState.commit; index++) {
      this.checkCommitted(node, node.disk.entries[index - base - 1]!);
    }
  }

  private checkCommitWithinLog(node: SimNode): void {
    const disk = node.disk;
    const last = (disk.snapshot?.meta.index ?? 0) + disk.entries.length;
    if (disk.hardState.commit > last) {
      throw new SimViolation(
        "persisted state",
        `node ${node.id} persisted commit ${disk.hardState.commit} beyond its persisted log (last ${last})`,
      );
    }
  }

  /** An (index, term) pair names one entry, with one predecessor term (log matching). */
  private checkLogMatching(node: SimNode, entry: Entry): void {
    const disk = node.disk;
    const base = disk.snapshot?.meta.index ?? 0;
    const previous = disk.entries[entry.index - base - 2];
    const previousTerm = previous !== undefined
      ? previous.term
      : entry.index - 1 === base
      ? disk.snapshot?.meta.term ?? 0
      : -1;
    if (previousTerm > entry.term) {
      throw new SimViolation(
        "log matching",
        `node ${node.id} log term decreases at ${entry.index}`,
      );
    }
    let terms = this.logRegistry.get(entry.index);
    if (terms === undefined) {
      terms = new Map();
      this.logRegistry.set(entry.index, terms);
    }
    const known = terms.get(entry.term);
    if (known === undefined) {
      Object.freeze(entry);
      terms.set(entry.term, { entry, previousTerm });
      return;
    }
    if (!sameEntry(known.entry, entry) || known.previousTerm !== previousTerm) {
      throw new SimViolation(
        "log matching",
        `node ${node.id} has a different entry (or predecessor) at index ${entry.index} term ${entry.term}`,
      );
    }
  }

  private checkCommitted(node: SimNode, entry: Entry | undefined): void {
    if (entry === undefined) {
      throw new SimViolation("persisted state", `node ${node.id} committed a missing entry`);
    }
    const known = this.committed[entry.index];
    if (known === undefined) {
      this.committed[entry.index] = entry;
      this.committedTerm[entry.index] = node.disk.hardState.term;
      if (entry.index > this.committedMax) this.committedMax = entry.index;
      if (entry.index > this.stats.commitIndex) this.stats.commitIndex = entry.index;
    } else if (!sameEntry(known, entry)) {
      throw new SimViolation(
        "state-machine safety",
        `node ${node.id} committed ${describeEntry(entry)} where ${
          describeEntry(known)
        } was committed`,
      );
    }
  }

  /**
   * Leader completeness (§5.4): a new leader holds every entry committed in an earlier
   * term. (Entries committed in its own term or later need not be there: a vote granted
   * long ago may reach the candidate only now.)
   */
  private checkLeaderCompleteness(node: SimNode): void {
    const disk = node.disk;
    const base = disk.snapshot?.meta.index ?? 0;
    for (let index = base + 1; index <= this.committedMax; index++) {
      const known = this.committed[index];
      if (known === undefined || this.committedTerm[index]! >= node.term) continue;
      const entry = disk.entries[index - base - 1];
      if (entry === undefined || !sameEntry(entry, known)) {
        throw new SimViolation(
          "leader completeness",
          `new leader ${node.id} (term ${node.term}) lacks committed ${describeEntry(known)}; has ${
            entry === undefined ? "nothing" : describeEntry(entry)
          }`,
        );
      }
    }
  }

  private apply(node: SimNode, ready: Ready): void {
    if (ready.snapshot !== undefined) {
      const snapshot = ready.snapshot;
      this.stats.snapshotsInstalled++;
      this.record(`installs snapshot at ${snapshot.meta.index}`, node.id);
      node.machine = this.factory.restore(snapshot.data);
      node.applied = snapshot.meta.index;
      node.appliedTerm = snapshot.meta.term;
      this.checkDigest(node, node.applied);
      for (const index of node.writes.keys()) if (index <= node.applied) node.writes.delete(index);
    }
    if (node.appliedEarly !== ready) {
      this.applyCommitted(node, ready.committedEntries, node.disk.hardState.commit);
    }
    node.appliedEarly = null;
    this.serveReadStates(node, ready);
  }

  /** Applies committed entries in order; `commitBound`: the commit they may not pass. */
  private applyCommitted(node: SimNode, entries: readonly Entry[], commitBound: number): void {
    for (const entry of entries) {
      if (entry.index !== node.applied + 1) {
        throw new SimViolation(
          "state-machine safety",
          `node ${node.id} applies index ${entry.index} after ${node.applied}`,
        );
      }
      if (entry.index > commitBound) {
        throw new SimViolation(
          "durability",
          `node ${node.id} applies index ${entry.index} beyond commit ${commitBound}`,
        );
      }
      this.checkCommitted(node, entry);
      node.machine!.apply(entry);
      node.applied = entry.index;
      node.appliedTerm = entry.term;
      this.checkDigest(node, entry.index);
      this.acknowledge(node, entry);
    }
  }

  /** Step 5 of the Ready: its read states and failed reads. */
  private serveReadStates(node: SimNode, ready: Ready): void {
    for (const state of ready.readStates) {
      const read = node.reads.get(state.requestId);
      if (read === undefined) continue;
      node.reads.delete(state.requestId);
      if (state.index < read.ackedBefore) {
        throw new SimViolation(
          "linearizable read",
          `read ${read.requestId} at node ${node.id} got read index ${state.index} but index ${read.ackedBefore} was committed or acknowledged before it started`,
        );
      }
      read.index = state.index;
      node.readsWaiting.push(read);
    }
    for (const requestId of ready.readFailures) {
      if (node.reads.delete(requestId)) {
        this.stats.readsFailed++;
        if (this.manual) this.readOutcomes.set(requestId, "failed");
      }
    }
  }

  private checkDigest(node: SimNode, index: number): void {
    const digest = node.machine!.digest();
    const known = this.digestAt[index];
    if (known === undefined) this.digestAt[index] = digest;
    else if (known !== digest) {
      throw new SimViolation(
        "state-machine safety",
        `node ${node.id} has state ${digest} at index ${index} where others had ${known}`,
      );
    }
  }

  private acknowledge(node: SimNode, entry: Entry): void {
    const write = node.writes.get(entry.index);
    if (write === undefined) return;
    node.writes.delete(entry.index);
    if (write.term !== entry.term) return; // Overwritten before it committed: not acknowledged.
    if (!sameBytes(write.data, entry.data)) {
      throw new SimViolation(
        "state-machine safety",
        `write at ${entry.index} term ${entry.term} changed its data`,
      );
    }
    this.stats.writesAcknowledged++;
    if (entry.index > this.ackedMaxIndex) this.ackedMaxIndex = entry.index;
    if (write.marker && write === this.marker) this.markerCommitted();
  }

  private serveReads(node: SimNode): void {
    if (node.readsWaiting.length === 0) return;
    const waiting: Read[] = [];
    for (const read of node.readsWaiting) {
      if (read.index <= node.applied) {
        this.stats.readsServed++;
        if (this.manual) this.readOutcomes.set(read.requestId, "served");
      } else waiting.push(read);
    }
    node.readsWaiting = waiting;
  }

  /** The application snapshots every `snapshotEvery` applied entries and compacts. */
  private maybeCompact(node: SimNode): void {
    const disk = node.disk;
    const snapshotIndex = disk.snapshot?.meta.index ?? 0;
    if (node.applied - snapshotIndex < this.parameters.snapshotEvery) return;
    const snapshot: Snapshot = {
      meta: { index: node.applied, term: node.appliedTerm, voters: this.ids },
      data: node.machine!.snapshot(),
    };
    this.stats.compactions++;
    disk.snapshot = snapshot;
    disk.entries = disk.entries.slice(node.applied - snapshotIndex);
    node.raft!.compact(snapshot);
  }

  // ------------------------------------------------------------------ trace

  private record(what: string | Message, node?: NodeId): void {
    const record: TraceRecord = { step: this.step, time: this.now, what, node };
    if (this.trace.length < this.traceLength) this.trace.push(record);
    else this.trace[this.traceNext] = record;
    this.traceNext = (this.traceNext + 1) % this.traceLength;
  }

  /** The last events, oldest first, formatted. */
  traceLines(): string[] {
    const ordered = this.trace.length < this.traceLength
      ? this.trace
      : [...this.trace.slice(this.traceNext), ...this.trace.slice(0, this.traceNext)];
    return ordered.map((record) => {
      const what = typeof record.what === "string" ? record.what : describeMessage(record.what);
      return `#${record.step} t=${record.time} ${
        record.node === undefined ? "" : `[${record.node}] `
      }${what}`;
    });
  }

  /** A one-line description of the parameters. */
  describe(): string {
    const p = this.parameters;
    return `nodes=${p.nodeCount} election=${p.electionTicks} heartbeat=${p.heartbeatTicks} preVote=${p.preVote} ` +
      `checkQuorum=${p.checkQuorum} read=${p.readMode} drift=${p.leaseDriftTicks} entries/append=${p.entriesPerAppendMax} ` +
      `bytes/append=${p.bytesPerAppendMax} inflight=${p.inflightAppendsMax} snapshotEvery=${p.snapshotEvery} ` +
      `tickPeriods=${p.tickPeriods.join(",")}`;
  }
}

function sameEntry(a: Entry, b: Entry): boolean {
  return a === b ||
    (a.index === b.index && a.term === b.term && a.kind === b.kind && sameBytes(a.data, b.data));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

function describeEntry(entry: Entry): string {
  const data = entry.kind === "normal"
    ? ` ${new TextDecoder().decode(entry.data.subarray(0, 32))}`
    : "";
  return `${entry.index}:${entry.term} ${entry.kind}${data}`;
}

/** A compact one-line form of a message for traces. */
export function describeMessage(message: Message): string {
  const parts = [`${message.type} ${message.from}->${message.to} term=${message.term}`];
  if (message.index !== undefined) parts.push(`index=${message.index}`);
  if (message.logTerm !== undefined) parts.push(`logTerm=${message.logTerm}`);
  if (message.entries !== undefined && message.entries.length > 0) {
    const first = message.entries[0]!;
    const last = message.entries[message.entries.length - 1]!;
    parts.push(`entries=${first.index}:${first.term}..${last.index}:${last.term}`);
  }
  if (message.commit !== undefined) parts.push(`commit=${message.commit}`);
  if (message.reject === true) parts.push(`reject hint=${message.rejectHint ?? "-"}`);
  if (message.snapshot !== undefined) {
    parts.push(`snapshot=${message.snapshot.meta.index}:${message.snapshot.meta.term}`);
  }
  if (message.context !== undefined) parts.push(`context=${message.context}`);
  return parts.join(" ");
}

/** The state machines the simulator can run: a hash-chain register or the lock service's. */
export type SimMachineName = "kv" | "lock";

/** A fresh factory (factories may hold per-run state, so never share one between runs). */
export function createMachineFactory(name: SimMachineName): SimStateMachineFactory {
  return name === "lock" ? new LockMachineFactory() : hashChainKvFactory;
}

/** The outcome of one seed. */
export interface SimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violation: string | null;
  readonly parameters: string;
  readonly trace: readonly string[];
  readonly stats: SimStats;
}

/** Runs one seed; never throws for a violation (it is in the result). */
export function runSeed(
  seed: number,
  steps: number,
  options: { nodes?: number; machine?: SimMachineName } = {},
): SimResult {
  const simulation = new Simulation({
    seed,
    ...(options.nodes === undefined ? {} : { nodes: options.nodes }),
    stateMachine: createMachineFactory(options.machine ?? "kv"),
  });
  try {
    simulation.run(steps);
    return {
      seed,
      ok: true,
      violation: null,
      parameters: simulation.describe(),
      trace: [],
      stats: simulation.stats,
    };
  } catch (error) {
    const violation = error instanceof SimViolation
      ? error.message
      : `crash: ${error instanceof Error ? error.stack ?? error.message : String(error)}`;
    return {
      seed,
      ok: false,
      violation,
      parameters: simulation.describe(),
      trace: simulation.traceLines(),
      stats: simulation.stats,
    };
  }
}
