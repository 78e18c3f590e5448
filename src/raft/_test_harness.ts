/**
 * A tiny in-memory cluster for the core's unit tests (like etcd-io/raft's `network`):
 * every node carries out its Ready in the documented order against an in-memory store,
 * and messages go through one queue that tests can filter (drop, partition).
 *
 * @module
 */

import { RaftNode } from "./node.ts";
import type {
  Entry,
  HardState,
  Message,
  NodeId,
  RaftOptions,
  ReadState,
  Snapshot,
} from "./types.ts";
import { invariant } from "./invariant.ts";

/** What one node persisted. */
export interface MemoryStore {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

/** A deterministic random in [0, 1) from a seed (mulberry32). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Default options for tests: election 10 ticks, heartbeat 1 tick. */
export function testOptions(
  id: NodeId,
  voters: readonly NodeId[],
  overrides: Partial<RaftOptions> = {},
): RaftOptions {
  return {
    id,
    voters,
    electionTicks: 10,
    heartbeatTicks: 1,
    preVote: false,
    checkQuorum: false,
    entriesPerAppendMax: 64,
    bytesPerAppendMax: 1 << 20,
    inflightAppendsMax: 8,
    readMode: "safe",
    leaseDriftTicks: 1,
    random: seededRandom(id.charCodeAt(0)),
    ...overrides,
  };
}

/** A cluster of cores wired through one message queue. */
export class Cluster {
  readonly nodes = new Map<NodeId, RaftNode>();
  readonly stores = new Map<NodeId, MemoryStore>();
  /** Entries applied by each node, in order (index → entry). */
  readonly applied = new Map<NodeId, Entry[]>();
  /** Read states delivered to each node. */
  readonly readStates = new Map<NodeId, ReadState[]>();
  readonly readFailures = new Map<NodeId, string[]>();
  /** Every message sent, for assertions. */
  readonly sent: Message[] = [];
  private queue: Message[] = [];
  /** Directed links that drop messages: "a>b". */
  private readonly cut = new Set<string>();
  /** Message types dropped everywhere. */
  readonly dropTypes = new Set<string>();
  readonly down = new Set<NodeId>();
  /** Drops every message for which it returns true. */
  drop: ((message: Message) => boolean) | null = null;
  readonly ids: NodeId[];
  private readonly overrides: Partial<RaftOptions>;

  constructor(ids: readonly NodeId[], overrides: Partial<RaftOptions> = {}) {
    this.ids = [...ids];
    this.overrides = overrides;
    for (const id of ids) {
      this.stores.set(id, {
        hardState: { term: 0, vote: null, commit: 0 },
        snapshot: null,
        entries: [],
      });
      this.applied.set(id, []);
      this.readStates.set(id, []);
      this.readFailures.set(id, []);
      this.start(id);
    }
  }

  /** (Re)starts a node from its store. */
  start(id: NodeId, overrides: Partial<RaftOptions> = {}): RaftNode {
    const store = this.stores.get(id)!;
    const node = new RaftNode(testOptions(id, this.ids, { ...this.overrides, ...overrides }), {
      hardState: store.hardState,
      snapshot: store.snapshot,
      entries: [...store.entries],
    });
    this.nodes.set(id, node);
    this.down.delete(id);
    // The state machine restarts from the snapshot.
    const snapshotIndex = store.snapshot?.meta.index ?? 0;
    this.applied.set(id, this.applied.get(id)!.filter((entry) => entry.index <= snapshotIndex));
    return node;
  }

  /** Crashes a node: it stops, and its messages in the queue are dropped. */
  crash(id: NodeId): void {
    this.down.add(id);
    this.queue = this.queue.filter((message) => message.from !== id && message.to !== id);
  }

  node(id: NodeId): RaftNode {
    const node = this.nodes.get(id);
    invariant(node !== undefined, `no node ${id}`);
    return node;
  }

  /** Isolates `id` from everyone (both directions). */
  isolate(id: NodeId): void {
    for (const other of this.ids) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  /** Drops messages from `from` to `to` (one way). */
  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.cut.clear();
    this.dropTypes.clear();
    this.drop = null;
  }

  /** Carries out the Ready of every node with one, in the documented order. */
  processReadies(): boolean {
    let any = false;
    for (const id of this.ids) {
      if (this.down.has(id)) continue;
      const node = this.node(id);
      if (!node.hasReady()) continue;
      any = true;
      const ready = node.ready();
      for (const message of ready.messagesBeforePersist) {
        this.sent.push(message);
        this.queue.push(message);
      }
      const store = this.stores.get(id)!;
      if (ready.snapshot !== undefined) {
        store.snapshot = ready.snapshot;
        store.entries = [];
      }
      const first = ready.entries[0];
      if (first !== undefined) {
        store.entries = store.entries.filter((entry) => entry.index < first.index).concat(
          ready.entries,
        );
      }
      if (ready.hardState !== undefined) store.hardState = ready.hardState;
      for (const message of ready.messages) {
        this.sent.push(message);
        this.queue.push(message);
      }
      const applied = this.applied.get(id)!;
      if (ready.snapshot !== undefined) {
        applied.length = 0;
      }
      for (const entry of ready.committedEntries) applied.push(entry);
      this.readStates.get(id)!.push(...ready.readStates);
      this.readFailures.get(id)!.push(...ready.readFailures);
      node.advance();
    }
    return any;
  }

  /** Delivers queued messages and processes Readies until nothing moves (bounded). */
  stabilize(stepsMax = 10_000): void {
    for (let step = 0; step < stepsMax; step++) {
      const moved = this.processReadies();
      if (this.queue.length === 0 && !moved) return;
      const queue = this.queue;
      this.queue = [];
      for (const message of queue) this.deliver(message);
    }
    throw new Error("Cannot stabilize as the cluster keeps producing work");
  }

  /** Delivers one message unless dropped. */
  deliver(message: Message): void {
    if (this.down.has(message.to) || this.down.has(message.from)) return;
    if (this.cut.has(`${message.from}>${message.to}`) || this.dropTypes.has(message.type)) return;
    if (this.drop !== null && this.drop(message)) return;
    this.node(message.to).step(message);
  }

  /** Ticks every live node `count` times, stabilizing after each tick. */
  tick(count = 1, ids: readonly NodeId[] = this.ids): void {
    for (let round = 0; round < count; round++) {
      for (const id of ids) if (!this.down.has(id)) this.node(id).tick();
      this.stabilize();
    }
  }

  /** Ticks until `id` is leader (bounded). */
  elect(id: NodeId): void {
    this.node(id).campaign();
    this.stabilize();
    invariant(this.node(id).status().role === "leader", `${id} did not become leader`);
  }

  leaders(): NodeId[] {
    return this.ids.filter((id) => !this.down.has(id) && this.node(id).status().role === "leader");
  }

  /** Data of applied normal entries of `id`, decoded as text. */
  appliedData(id: NodeId): string[] {
    return this.applied.get(id)!.filter((entry) => entry.kind === "normal").map((entry) =>
      new TextDecoder().decode(entry.data)
    );
  }
}

/** Encodes text as entry data. */
export function text(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}
