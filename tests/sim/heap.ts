/**
 * A binary min-heap of simulator events ordered by (time, sequence): equal times keep
 * insertion order, so the schedule is deterministic.
 *
 * @module
 */

/** Anything with a time and a tie-breaking sequence number. */
export interface Scheduled {
  readonly time: number;
  readonly sequence: number;
}

/** Min-heap by (time, sequence). */
export class EventHeap<T extends Scheduled> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  push(item: T): void {
    const items = this.items;
    items.push(item);
    let child = items.length - 1;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!before(items[child]!, items[parent]!)) break;
      [items[child], items[parent]] = [items[parent]!, items[child]!];
      child = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    items[0] = last;
    let parent = 0;
    for (;;) {
      const left = 2 * parent + 1;
      const right = left + 1;
      let smallest = parent;
      if (left < items.length && before(items[left]!, items[smallest]!)) smallest = left;
      if (right < items.length && before(items[right]!, items[smallest]!)) smallest = right;
      if (smallest === parent) break;
      [items[smallest], items[parent]] = [items[parent]!, items[smallest]!];
      parent = smallest;
    }
    return top;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  /** Removes every item for which `drop` returns true (O(n)). */
  removeWhere(drop: (item: T) => boolean): void {
    const kept = this.items.filter((item) => !drop(item));
    this.items.length = 0;
    for (const item of kept) this.push(item);
  }
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.time < b.time || (a.time === b.time && a.sequence < b.sequence);
}
