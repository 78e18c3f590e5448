/**
 * Packing of mutations into Deno KV atomic commits within KV's per-commit limits.
 *
 * Mutations come in units: the mutations of one unit (for example the head and overflow
 * parts of one entry) always land in the same commit, so that no commit boundary splits
 * something that must not be seen half written.
 *
 * @module
 */

import { invariant } from "./_invariant.ts";
import { kvLimits } from "./_codec.ts";

/** One KV mutation. */
export type Mutation =
  | { readonly type: "set"; readonly key: Deno.KvKey; readonly value: unknown }
  | { readonly type: "delete"; readonly key: Deno.KvKey };

/** Mutations that must be committed together. */
export type Unit = readonly Mutation[];

/** Size of a commit, in the units KV limits it by. */
export interface CommitCost {
  mutations: number;
  keyBytes: number;
  totalBytes: number;
}

const textEncoder = new TextEncoder();

/** An over-estimate of the encoded size of a key (KV's tuple encoding). */
export function keyBytesEstimate(key: Deno.KvKey): number {
  let bytes = 0;
  for (const part of key) {
    if (typeof part === "string") bytes += 2 + 2 * textEncoder.encode(part).length;
    else if (part instanceof Uint8Array) bytes += 2 + 2 * part.length;
    else if (typeof part === "bigint") bytes += 11;
    else if (typeof part === "number") bytes += 9;
    else bytes += 1;
  }
  return bytes;
}

/** An over-estimate of the stored size of a value (bytes are stored as they are). */
export function valueBytesEstimate(value: unknown): number {
  if (value instanceof Uint8Array) return value.length;
  const json = JSON.stringify(
    value,
    (_key, part: unknown) => typeof part === "bigint" ? part.toString() : part,
  );
  return 64 + 2 * (json?.length ?? 0);
}

/** Cost of one mutation. */
export function mutationCost(mutation: Mutation): CommitCost {
  const keyBytes = keyBytesEstimate(mutation.key);
  const valueBytes = mutation.type === "set" ? valueBytesEstimate(mutation.value) : 0;
  return { mutations: 1, keyBytes, totalBytes: keyBytes + valueBytes };
}

/** The cost of two commits' mutations together. */
export function addCosts(total: CommitCost, more: CommitCost): CommitCost {
  return {
    mutations: total.mutations + more.mutations,
    keyBytes: total.keyBytes + more.keyBytes,
    totalBytes: total.totalBytes + more.totalBytes,
  };
}

/** Cost of a list of mutations. */
export function costOf(mutations: readonly Mutation[]): CommitCost {
  return mutations.reduce((total, m) => addCosts(total, mutationCost(m)), emptyCost);
}

export const emptyCost: CommitCost = { mutations: 0, keyBytes: 0, totalBytes: 0 };

/** True when a commit of this cost is within KV's limits. */
export function fitsInOneCommit(cost: CommitCost): boolean {
  return cost.mutations <= kvLimits.mutationsPerCommitMax &&
    cost.keyBytes <= kvLimits.commitKeyBytesMax &&
    cost.totalBytes <= kvLimits.commitBytesMax;
}

/**
 * Packs units, in order, greedily into commits, each leaving room for `reserve` (for
 * example a hard state written in every commit).
 * @returns the commits, each a list of mutations, in order.
 */
export function packUnits(units: readonly Unit[], reserve: CommitCost): Mutation[][] {
  return packUnitsCounted(units, reserve).map((packed) => packed.mutations);
}

/** A commit packed by {@link packUnitsCounted}. */
export interface PackedCommit {
  readonly mutations: Mutation[];
  /** Position in the packed units of the last unit in this commit. */
  readonly lastUnit: number;
}

/** Like {@link packUnits}, and says which units each commit holds. */
export function packUnitsCounted(units: readonly Unit[], reserve: CommitCost): PackedCommit[] {
  const commits: PackedCommit[] = [];
  let current: Mutation[] = [];
  let cost = reserve;
  for (const [position, unit] of units.entries()) {
    const unitCost = costOf(unit);
    invariant(fitsInOneCommit(addCosts(reserve, unitCost)), "a unit does not fit in one commit");
    const combined = addCosts(cost, unitCost);
    if (!fitsInOneCommit(combined)) {
      commits.push({ mutations: current, lastUnit: position - 1 });
      current = [];
      cost = addCosts(reserve, unitCost);
    } else {
      cost = combined;
    }
    current.push(...unit);
  }
  if (current.length > 0) commits.push({ mutations: current, lastUnit: units.length - 1 });
  return commits;
}

/**
 * Commits `mutations` atomically. Resolves when the commit is durable (KV's SQLite backend
 * fsyncs its write-ahead log in every commit; see mod.ts).
 */
export async function commit(kv: Deno.Kv, mutations: readonly Mutation[]): Promise<void> {
  if (mutations.length === 0) return;
  const operation = kv.atomic();
  for (const mutation of mutations) {
    if (mutation.type === "set") operation.set(mutation.key, mutation.value);
    else operation.delete(mutation.key);
  }
  const result = await operation.commit();
  invariant(result.ok, "an atomic commit without checks was refused");
}
