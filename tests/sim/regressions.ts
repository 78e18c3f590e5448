/**
 * Seeds that once broke a property. Each runs in the default test suite (sim_test.ts)
 * with the step count it failed at; add every newly found failing seed here once fixed.
 *
 * @module
 */

import type { SimMachineName } from "./simulation.ts";

/** One seed that once failed, and why. */
export interface Regression {
  readonly seed: number;
  readonly steps: number;
  readonly nodes?: number;
  readonly machine?: SimMachineName;
  readonly note: string;
}

/** Every seed that once failed. */
export const regressions: readonly Regression[] = [
  {
    seed: 1322,
    steps: 3000,
    note: "liveness: without pre-vote, a fast-ticking node with a stale log kept resetting " +
      "the others' election timers with rejected vote requests; fixed by not resetting the " +
      "timer on a higher-term message that is not from a leader (§5.2)",
  },
  { seed: 1867, steps: 3000, note: "liveness, same cause as 1322" },
  { seed: 1904, steps: 3000, note: "liveness, same cause as 1322" },
  { seed: 1915, steps: 3000, note: "liveness, same cause as 1322" },
  {
    seed: 1855,
    steps: 3000,
    note: "checker: a delayed vote made a term-12 leader after term-13 entries were " +
      "committed; leader completeness only covers entries committed in earlier terms",
  },
  {
    seed: 6369,
    steps: 3000,
    note: "linearizable read: with lease reads, an explicit campaign() by a follower that " +
      "had just acknowledged the leader's heartbeat (so backed its lease) elected a new " +
      "leader inside the lease; campaign() now honours the lease",
  },
  { seed: 9113, steps: 3000, note: "linearizable read, same cause as 6369 (with pre-vote)" },
  { seed: 14553, steps: 3000, note: "linearizable read, same cause as 6369" },
  { seed: 16990, steps: 3000, note: "linearizable read, same cause as 6369" },
  { seed: 17205, steps: 3000, note: "linearizable read, same cause as 6369" },
  {
    seed: 300650,
    steps: 3000,
    machine: "lock",
    note: "simulator: the lock command generator made a cancelWait with request id -1",
  },
  {
    seed: 76,
    steps: 4000,
    note: "checker, with slow disks: one write carried a vote granted in term 11 and a " +
      "later term 13 (several steps while the write was in progress); the durability " +
      "check now accepts a promise superseded by a later persisted term",
  },
  {
    seed: 20052,
    steps: 2000,
    machine: "lock",
    note: "checker, same cause as 76",
  },
  {
    seed: 4,
    steps: 3000,
    machine: "lock",
    note: "lock snapshot: a request id applied after newer ones of its session stayed " +
      "remembered below the dedupe floor, and restore refused such a snapshot (a server " +
      "restarted in the bench's failover run could not start); found once the generator " +
      "sent out-of-order ids and the sim used a 4-result dedupe table",
  },
  { seed: 11, steps: 3000, machine: "lock", note: "same cause as 4" },
];
