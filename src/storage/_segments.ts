/**
 * The in-memory index of the log segments stored in a Raft store: which key holds which
 * entries, so that the store finds the segment of an index (for a term, a truncation or a
 * compaction) without listing keys. Pure, no I/O.
 *
 * @module
 */

import { logKey, logPartKey } from "./_codec.ts";
import { invariant } from "./_invariant.ts";

/** One stored segment: the entries `firstIndex` to `lastIndex` under `["log", firstIndex]`. */
export interface SegmentInfo {
  readonly firstIndex: number;
  readonly lastIndex: number;
  /** Overflow parts stored with it (`["log", firstIndex, 1…]`): 0 unless one big entry. */
  readonly partCount: number;
}

/** Every key of a segment: its head, then its overflow parts. */
export function segmentKeys(segment: SegmentInfo): Deno.KvKey[] {
  const keys = [logKey(segment.firstIndex)];
  for (let part = 1; part <= segment.partCount; part++) {
    keys.push(logPartKey(segment.firstIndex, part));
  }
  return keys;
}

/**
 * The stored segments in index order. They never overlap; the ones holding entries of the
 * log (after the snapshot, up to the last index) are contiguous. Every segment in the store
 * is in the index, so that a write knows every key it must overwrite or delete.
 */
export class SegmentIndex {
  /** Sorted by firstIndex, not overlapping. */
  #segments: SegmentInfo[];

  /** @param segments the stored segments, in index order, not overlapping. */
  constructor(segments: readonly SegmentInfo[]) {
    this.#segments = [];
    for (const segment of segments) this.#push(segment);
  }

  /** Number of segments. */
  get size(): number {
    return this.#segments.length;
  }

  /** The segments, in index order. */
  all(): readonly SegmentInfo[] {
    return this.#segments;
  }

  /** The segment that holds the entry at `index`, if any. */
  find(index: number): SegmentInfo | undefined {
    let low = 0;
    let high = this.#segments.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const segment = this.#segments[middle]!;
      if (segment.firstIndex > index) high = middle - 1;
      else if (segment.lastIndex < index) low = middle + 1;
      else return segment;
    }
    return undefined;
  }

  /** The segments whose first entry is at or after `index`, in index order. */
  from(index: number): SegmentInfo[] {
    return this.#segments.slice(this.#firstAtOrAfter(index));
  }

  /**
   * Records a write from `index` on: every segment starting at or after `index` is gone,
   * a segment holding `index` now ends before it (it was rewritten truncated), and
   * `segments` (starting at or after `index`, in order) are stored.
   */
  replaceFrom(index: number, segments: readonly SegmentInfo[]): void {
    this.#segments.length = this.#firstAtOrAfter(index);
    const last = this.#segments.at(-1);
    if (last !== undefined && last.lastIndex >= index) {
      this.#segments[this.#segments.length - 1] = { ...last, lastIndex: index - 1 };
    }
    for (const segment of segments) this.#push(segment);
  }

  /**
   * Segments that hold no entry of the log (every entry at or below `snapshotIndex`, or
   * after `lastIndex`): from the start and from the end of the index, at most `keysMax`
   * keys in all (but at least one segment when there is one).
   */
  dead(snapshotIndex: number, lastIndex: number, keysMax: number): SegmentInfo[] {
    const isDead = (segment: SegmentInfo) =>
      segment.lastIndex <= snapshotIndex || segment.firstIndex > lastIndex ||
      lastIndex <= snapshotIndex;
    const dead: SegmentInfo[] = [];
    let keys = 0;
    const take = (segment: SegmentInfo): boolean => {
      const segmentKeyCount = 1 + segment.partCount;
      if (dead.length > 0 && keys + segmentKeyCount > keysMax) return false;
      dead.push(segment);
      keys += segmentKeyCount;
      return true;
    };
    let front = 0;
    for (; front < this.#segments.length; front++) {
      const segment = this.#segments[front]!;
      if (!isDead(segment)) break;
      if (!take(segment)) return dead;
    }
    for (let back = this.#segments.length - 1; back >= front; back--) {
      const segment = this.#segments[back]!;
      if (!isDead(segment) || !take(segment)) break;
    }
    return dead;
  }

  /** Forgets `segments` (deleted from the store). */
  remove(segments: readonly SegmentInfo[]): void {
    if (segments.length === 0) return;
    const gone = new Set(segments.map((segment) => segment.firstIndex));
    this.#segments = this.#segments.filter((segment) => !gone.has(segment.firstIndex));
  }

  /** Position of the first segment whose first entry is at or after `index` (binary search). */
  #firstAtOrAfter(index: number): number {
    let low = 0;
    let high = this.#segments.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#segments[middle]!.firstIndex < index) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  #push(segment: SegmentInfo): void {
    invariant(
      segment.firstIndex >= 1 && segment.lastIndex >= segment.firstIndex &&
        segment.partCount >= 0,
      `bad segment ${segment.firstIndex}..${segment.lastIndex}`,
    );
    const last = this.#segments.at(-1);
    invariant(
      last === undefined || segment.firstIndex > last.lastIndex,
      `segment ${segment.firstIndex}..${segment.lastIndex} overlaps ${last?.firstIndex}..${last?.lastIndex}`,
    );
    this.#segments.push(segment);
  }
}
