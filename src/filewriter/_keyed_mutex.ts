/**
 * Serialises work per key inside one process, with a bound on waiters per key.
 * @module
 */
import { ResourceExhaustedError } from "../errors.ts";

type Slot = { tail: Promise<void>; waiting: number };

/** A FIFO mutex per key; keys with nobody holding or waiting are forgotten. */
export class KeyedMutex {
  readonly #slots = new Map<string, Slot>();
  readonly #waitersPerKeyMax: number;

  /** @param waitersPerKeyMax holders plus waiters allowed per key before refusing. */
  constructor(waitersPerKeyMax: number) {
    this.#waitersPerKeyMax = waitersPerKeyMax;
  }

  /**
   * Runs `work` once every earlier `run` for `key` has settled.
   * @throws {ResourceExhaustedError} when `waitersPerKeyMax` calls already wait for `key`.
   */
  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    let slot = this.#slots.get(key);
    if (slot === undefined) {
      slot = { tail: Promise.resolve(), waiting: 0 };
      this.#slots.set(key, slot);
    }
    if (slot.waiting >= this.#waitersPerKeyMax) {
      throw new ResourceExhaustedError(
        `Cannot queue another append for ${
          JSON.stringify(key)
        } as ${slot.waiting} already wait: received one more`,
      );
    }
    slot.waiting += 1;
    const previous = slot.tail;
    let release!: () => void;
    const current = new Promise<void>((resolve) => (release = resolve));
    slot.tail = previous.then(() => current);
    try {
      await previous;
      return await work();
    } finally {
      release();
      slot.waiting -= 1;
      if (slot.waiting === 0) this.#slots.delete(key);
    }
  }
}
