/**
 * A min-heap of deadlines: the server's one timer structure for acquire timeouts and
 * session expiry, polled from the tick loop (no timer per operation).
 *
 * Entries are never removed from the middle; a caller that no longer cares about an
 * entry marks it stale in its own state and skips it when it pops (lazy deletion).
 *
 * @module
 */

/** A min-heap of `(deadlineMs, item)`; see the module documentation. */
export class DeadlineQueue<T> {
  readonly #deadlines: number[] = [];
  readonly #items: T[] = [];

  /** Number of entries, stale ones included. */
  get size(): number {
    return this.#items.length;
  }

  /** Adds `item` due at `deadlineMs`. O(log n). */
  push(deadlineMs: number, item: T): void {
    this.#deadlines.push(deadlineMs);
    this.#items.push(item);
    this.#up(this.#items.length - 1);
  }

  /** The earliest deadline, or Infinity when empty. */
  peekDeadlineMs(): number {
    return this.#deadlines[0] ?? Infinity;
  }

  /** Removes and returns every item due at or before `nowMs`, earliest first. */
  popDue(nowMs: number): T[] {
    const due: T[] = [];
    while (this.#items.length > 0 && (this.#deadlines[0] ?? Infinity) <= nowMs) {
      due.push(this.#popTop());
    }
    return due;
  }

  /** Removes everything. */
  clear(): void {
    this.#deadlines.length = 0;
    this.#items.length = 0;
  }

  #popTop(): T {
    const top = this.#items[0] as T;
    const lastDeadline = this.#deadlines.pop() as number;
    const lastItem = this.#items.pop() as T;
    if (this.#items.length > 0) {
      this.#deadlines[0] = lastDeadline;
      this.#items[0] = lastItem;
      this.#down(0);
    }
    return top;
  }

  #swap(a: number, b: number): void {
    const deadline = this.#deadlines[a] as number;
    this.#deadlines[a] = this.#deadlines[b] as number;
    this.#deadlines[b] = deadline;
    const item = this.#items[a] as T;
    this.#items[a] = this.#items[b] as T;
    this.#items[b] = item;
  }

  #up(index: number): void {
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if ((this.#deadlines[parent] as number) <= (this.#deadlines[index] as number)) return;
      this.#swap(parent, index);
      index = parent;
    }
  }

  #down(index: number): void {
    const length = this.#items.length;
    for (;;) {
      const left = 2 * index + 1;
      const right = left + 1;
      let smallest = index;
      if (
        left < length && (this.#deadlines[left] as number) < (this.#deadlines[smallest] as number)
      ) {
        smallest = left;
      }
      if (
        right < length && (this.#deadlines[right] as number) < (this.#deadlines[smallest] as number)
      ) {
        smallest = right;
      }
      if (smallest === index) return;
      this.#swap(smallest, index);
      index = smallest;
    }
  }
}
