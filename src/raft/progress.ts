/**
 * The leader's view of one follower's log (etcd-io/raft tracker.Progress): how far it
 * matches, what to send next, and the flow-control state.
 *
 * - probe: one append at a time until the follower's position is found;
 * - replicate: optimistic pipelining, up to `inflightAppendsMax` appends in flight;
 * - snapshot: a snapshot is on its way; nothing else is sent until it is acknowledged
 *   or the wait times out.
 *
 * @module
 */

import { invariant } from "./invariant.ts";

/** Flow-control state of one follower. */
export type ProgressState = "probe" | "replicate" | "snapshot";

/** The leader's record of one follower (private to src/raft). */
export class Progress {
  /** Highest index known to match the leader's log. */
  match = 0;
  /** Next index to send. */
  next: number;
  state: ProgressState = "probe";
  /** In probe state: an append was sent and not yet answered. */
  probeSent = false;
  /** In snapshot state: the index of the snapshot sent. */
  pendingSnapshot = 0;
  /** Ticks spent in snapshot state (the wait is bounded). */
  snapshotTicks = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = true;
  /** Highest heartbeat round acknowledged in this term. */
  ackedRound = 0;
  /** Last indexes of appends in flight, oldest first; at most `inflightMax`. */
  readonly inflights: number[] = [];
  readonly inflightMax: number;

  constructor(next: number, inflightMax: number) {
    invariant(inflightMax >= 1, "inflightAppendsMax must be at least 1");
    this.next = next;
    this.inflightMax = inflightMax;
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = "probe";
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.length = 0;
  }

  becomeReplicate(): void {
    this.state = "replicate";
    this.next = this.match + 1;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.length = 0;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.state = "snapshot";
    this.pendingSnapshot = snapshotIndex;
    this.snapshotTicks = 0;
    this.probeSent = false;
    this.inflights.length = 0;
  }

  /** Records an acknowledged index; returns whether `match` grew. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      this.probeSent = false;
      updated = true;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * Handles a rejected append at `rejected`, with the leader-side estimate `matchHint`
   * of the last matching index (fast back-tracking). Returns false for a stale rejection.
   */
  maybeDecreaseTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Nothing more may be sent until a response arrives. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.length >= this.inflightMax;
      case "snapshot":
        return true;
    }
  }

  /** Records an append whose last entry is `lastIndex`, sent optimistically. */
  sentEntries(lastIndex: number): void {
    if (this.state === "replicate") {
      this.next = lastIndex + 1;
      invariant(this.inflights.length < this.inflightMax, "inflight window overflow");
      this.inflights.push(lastIndex);
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  /** Frees every in-flight append up to `index`. */
  freeInflightsTo(index: number): void {
    let freed = 0;
    while (freed < this.inflights.length && this.inflights[freed]! <= index) freed++;
    if (freed > 0) this.inflights.splice(0, freed);
  }

  /** Frees the oldest in-flight append (after a heartbeat response, to unblock a full window). */
  freeFirstInflight(): void {
    if (this.inflights.length > 0) this.inflights.shift();
  }
}
