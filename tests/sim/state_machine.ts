/**
 * The replicated state machine plugged into the simulator. The simulator checks
 * state-machine safety by comparing, per applied index, the entry and the machine's
 * digest on every node, so any deterministic machine can be plugged in (the lock state
 * machine of src/lock/ through an adapter of this interface).
 *
 * @module
 */

import type { Entry } from "../../src/raft/mod.ts";
import type { Random } from "./random.ts";

/** One replica's state machine. Deterministic: same entries, same digest. */
export interface SimStateMachine {
  /** Applies a committed entry (of any kind; noops too). */
  apply(entry: Entry): void;
  /** Serializes the whole state. */
  snapshot(): Uint8Array;
  /** A digest of the whole state, compared across replicas at each applied index. */
  digest(): string;
  /** Reads a value for linearizability checks (null when absent). */
  read(key: string): string | null;
}

/** Creates replicas and client commands for one kind of state machine. */
export interface SimStateMachineFactory {
  readonly name: string;
  create(): SimStateMachine;
  restore(bytes: Uint8Array): SimStateMachine;
  /** A client command writing `value` to `key`. */
  write(key: string, value: string, random: Random): Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A key-value register with a hash chain over every applied entry: the digest changes
 * with each entry, so two replicas agree on it only if they applied the same sequence.
 */
export class HashChainKv implements SimStateMachine {
  private index = 0;
  private hash = 0x811c9dc5;
  private readonly values = new Map<string, string>();

  apply(entry: Entry): void {
    if (entry.index !== this.index + 1) {
      throw new Error(
        `Cannot apply entry ${entry.index} after ${this.index}: entries must be contiguous`,
      );
    }
    let hash = this.hash;
    hash = mix(hash, entry.index);
    hash = mix(hash, entry.term);
    hash = mix(hash, entry.kind.length);
    for (let k = 0; k < entry.data.length; k++) hash = mix(hash, entry.data[k]!);
    this.hash = hash;
    this.index = entry.index;
    if (entry.kind === "normal") {
      const text = decoder.decode(entry.data);
      const equals = text.indexOf("=");
      if (equals > 0) this.values.set(text.slice(0, equals), text.slice(equals + 1));
    }
  }

  snapshot(): Uint8Array {
    return encoder.encode(
      JSON.stringify({ index: this.index, hash: this.hash, values: [...this.values] }),
    );
  }

  digest(): string {
    return `${this.index}:${this.hash.toString(16)}:${this.values.size}`;
  }

  read(key: string): string | null {
    return this.values.get(key) ?? null;
  }

  static restore(bytes: Uint8Array): HashChainKv {
    const parsed = JSON.parse(decoder.decode(bytes)) as {
      index: number;
      hash: number;
      values: [string, string][];
    };
    const machine = new HashChainKv();
    machine.index = parsed.index;
    machine.hash = parsed.hash;
    for (const [key, value] of parsed.values) machine.values.set(key, value);
    return machine;
  }
}

function mix(hash: number, value: number): number {
  // FNV-1a over 32-bit words.
  return Math.imul(hash ^ (value >>> 0), 0x01000193) >>> 0;
}

/** The default factory: {@link HashChainKv} with `key=value` commands. */
export const hashChainKvFactory: SimStateMachineFactory = {
  name: "kv",
  create: () => new HashChainKv(),
  restore: (bytes) => HashChainKv.restore(bytes),
  write: (key, value) => encoder.encode(`${key}=${value}`),
};
