/**
 * The in-memory Raft log of one core: the entries since the last snapshot, plus the
 * bookkeeping of which of them are handed to storage and which are committed.
 *
 * Indexes: entries[k] has index `snapshotIndex + 1 + k`. Terms never decrease along the
 * log, which makes searching by term a binary search.
 *
 * @module
 */

import type { Entry, Snapshot } from "./types.ts";
import { invariant } from "./invariant.ts";

/** Where a search by term ended: an index and the term there (0 when unknown). */
export interface IndexTerm {
  readonly index: number;
  readonly term: number;
}

/** The log of one core (private to src/raft). */
export class RaftLog {
  /** Index of the last entry covered by the snapshot (0 when there is none). */
  snapshotIndex: number;
  /** Term of that entry. */
  snapshotTerm: number;
  /** Entries after the snapshot, contiguous. Appends are amortized O(1). */
  entries: Entry[];
  /** Highest index known committed. */
  committed: number;
  /** Highest index the application has applied (or restored from a snapshot). */
  applied: number;
  /** First index not yet handed to storage in a Ready; everything before is (being) persisted. */
  unstableFrom: number;

  constructor(
    snapshotIndex: number,
    snapshotTerm: number,
    entries: readonly Entry[],
    committed: number,
  ) {
    this.snapshotIndex = snapshotIndex;
    this.snapshotTerm = snapshotTerm;
    this.entries = [...entries];
    for (let k = 0; k < this.entries.length; k++) {
      const entry = this.entries[k]!;
      invariant(
        entry.index === snapshotIndex + 1 + k,
        `restored entries must follow the snapshot contiguously: expected index ${
          snapshotIndex + 1 + k
        }, received ${entry.index}`,
      );
      const previousTerm = k === 0 ? snapshotTerm : this.entries[k - 1]!.term;
      invariant(
        entry.term >= previousTerm,
        `restored log terms must not decrease at index ${entry.index}`,
      );
    }
    this.unstableFrom = this.lastIndex() + 1;
    this.committed = Math.max(committed, snapshotIndex);
    invariant(
      this.committed <= this.lastIndex(),
      `restored commit ${this.committed} is beyond the last index ${this.lastIndex()}`,
    );
    this.applied = snapshotIndex;
  }

  firstIndex(): number {
    return this.snapshotIndex + 1;
  }

  lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }

  lastTerm(): number {
    const last = this.entries[this.entries.length - 1];
    return last === undefined ? this.snapshotTerm : last.term;
  }

  /** Term at `index`, or undefined when it is compacted away or beyond the log. */
  term(index: number): number | undefined {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapshotIndex - 1]!.term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** The entry at `index`, which must be in memory. */
  entry(index: number): Entry {
    const entry = this.entries[index - this.snapshotIndex - 1];
    invariant(entry !== undefined && entry.index === index, `entry ${index} is not in the log`);
    return entry;
  }

  /** Raft §5.4.1: is a log ending at (lastIndex, lastTerm) at least as up to date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Entries in [from, to), at most `entriesMax` of them and about `bytesMax` bytes (at
   * least one entry when any is available). `from` must be after the snapshot.
   */
  slice(from: number, to: number, entriesMax: number, bytesMax: number): Entry[] {
    invariant(
      from > this.snapshotIndex,
      `slice from ${from} is compacted (snapshot ${this.snapshotIndex})`,
    );
    const end = Math.min(to, this.lastIndex() + 1, from + entriesMax);
    const result: Entry[] = [];
    let bytes = 0;
    for (let index = from; index < end; index++) {
      const entry = this.entries[index - this.snapshotIndex - 1]!;
      bytes += entry.data.length;
      if (result.length > 0 && bytes > bytesMax) break;
      result.push(entry);
    }
    return result;
  }

  /**
   * Appends entries that follow `entries[0].index - 1`, replacing any conflicting suffix.
   * Committed entries are never replaced.
   */
  append(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    invariant(
      first.index > this.committed,
      `cannot replace committed entry ${first.index} (committed ${this.committed})`,
    );
    invariant(
      first.index <= this.lastIndex() + 1 && first.index > this.snapshotIndex,
      `append at ${first.index} leaves a gap or overwrites the snapshot (last ${this.lastIndex()}, snapshot ${this.snapshotIndex})`,
    );
    const keep = first.index - this.snapshotIndex - 1;
    if (keep < this.entries.length) this.entries.length = keep;
    for (const entry of entries) this.entries.push(entry);
    if (first.index < this.unstableFrom) this.unstableFrom = first.index;
  }

  /**
   * Index of the first entry of `entries` that is not in our log with the same term
   * (0 when all are).
   */
  findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with that term; used for fast
   * back-tracking (etcd-io/raft findConflictByTerm). Returns term 0 when the search runs
   * into the compacted prefix.
   */
  findConflictByTerm(index: number, term: number): IndexTerm {
    if (index > this.lastIndex()) return { index, term: 0 };
    if (index <= this.snapshotIndex) {
      return index === this.snapshotIndex && this.snapshotTerm <= term
        ? { index, term: this.snapshotTerm }
        : { index, term: 0 };
    }
    // Terms are non-decreasing: binary search in (snapshotIndex, index].
    let low = this.snapshotIndex + 1;
    let high = index;
    if (this.entry(low).term > term) {
      return this.snapshotTerm <= term
        ? { index: this.snapshotIndex, term: this.snapshotTerm }
        : { index: this.snapshotIndex, term: 0 };
    }
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (this.entry(middle).term <= term) low = middle;
      else high = middle - 1;
    }
    return { index: low, term: this.entry(low).term };
  }

  /**
   * Raft §5.3 AppendEntries receiver: if our log has (prevIndex, prevTerm), appends the
   * new entries (truncating a conflicting suffix) and returns the index of the last new
   * entry; otherwise returns undefined.
   */
  maybeAppend(prevIndex: number, prevTerm: number, entries: readonly Entry[]): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      invariant(
        conflict > this.committed,
        `entry ${conflict} conflicts with a committed entry (committed ${this.committed})`,
      );
      this.append(entries.slice(conflict - prevIndex - 1));
    }
    return lastNew;
  }

  /** Raises the commit index (never lowers it). */
  commitTo(index: number): boolean {
    if (index <= this.committed) return false;
    invariant(
      index <= this.lastIndex(),
      `commit ${index} is beyond the last index ${this.lastIndex()}`,
    );
    this.committed = index;
    return true;
  }

  /** Marks entries up to (index, term) as persisted, if they are still in the log unchanged. */
  stableTo(index: number, term: number): void {
    if (index >= this.unstableFrom && this.matchTerm(index, term)) this.unstableFrom = index + 1;
  }

  /** Entries not yet handed to storage. */
  unstableEntries(): Entry[] {
    const from = this.unstableFrom - this.snapshotIndex - 1;
    return from >= this.entries.length ? [] : this.entries.slice(from);
  }

  /** Replaces the whole log by a snapshot received from the leader. */
  restore(snapshot: Snapshot): void {
    this.snapshotIndex = snapshot.meta.index;
    this.snapshotTerm = snapshot.meta.term;
    this.entries = [];
    this.committed = snapshot.meta.index;
    this.unstableFrom = snapshot.meta.index + 1;
  }

  /** Discards entries up to `index` (already applied and covered by a local snapshot). */
  compact(index: number, term: number): void {
    if (index <= this.snapshotIndex) return;
    invariant(index <= this.applied, `cannot compact to ${index} beyond applied ${this.applied}`);
    invariant(
      this.matchTerm(index, term),
      `snapshot term ${term} does not match the log at ${index}`,
    );
    this.entries = this.entries.slice(index - this.snapshotIndex);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
  }
}
