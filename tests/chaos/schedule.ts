/**
 * The fault schedule: a pure function of the seed and the run's shape. The nemesis runs
 * it; targets that depend on the cluster's state (who is the leader) are resolved when a
 * fault starts, but every random choice is made here.
 *
 * Two lanes run side by side: server and network faults one after another with a healthy
 * pause between them, and client pauses on their own, slower lane.
 *
 * @module
 */
import type { FaultKind } from "./history.ts";
import { SeededRandom } from "./random.ts";

/** Every fault kind, in the order `--faults` lists them. */
export const allFaultKinds: readonly FaultKind[] = [
  "kill",
  "pause",
  "partition",
  "partition-oneway",
  "isolate-leader",
  "client-pause",
  "filewriter-kill",
  "restart-all",
];

/** Fault kinds that need network namespaces. */
export const networkFaultKinds: ReadonlySet<FaultKind> = new Set([
  "partition",
  "partition-oneway",
  "isolate-leader",
]);

/** One planned fault. Offsets are from the start of the fault phase. */
export type PlannedFault = {
  id: number;
  kind: FaultKind;
  atMs: number;
  durationMs: number;
  /** kill / pause: hit the leader (resolved at start) instead of `serverIndex`. */
  targetLeader: boolean;
  /** kill / pause: the server hit when not the leader. */
  serverIndex: number;
  /**
   * partition: `[sideA, sideB]` server indices cut from each other both ways.
   * partition-oneway: packets from `sideA` to `sideB` are dropped (routes in sideA only).
   */
  sides: [number[], number[]];
  /** client-pause: the worker paused. */
  workerIndex: number;
};

/** The shape of a run the schedule depends on. */
export type ScheduleOptions = {
  seconds: number;
  servers: number;
  clients: number;
  faults: readonly FaultKind[];
  sessionTtlMs: number;
};

const weights: Record<FaultKind, number> = {
  kill: 3,
  pause: 2,
  partition: 2,
  "partition-oneway": 1,
  "isolate-leader": 2,
  "client-pause": 0,
  "filewriter-kill": 1,
  "restart-all": 0.5,
};

/** Bounds of each fault's duration in milliseconds. */
function durationBoundsMs(kind: FaultKind, sessionTtlMs: number): [number, number] {
  switch (kind) {
    case "kill":
      return [500, 5_000];
    case "pause":
      return [1_000, 6_000];
    case "partition":
    case "partition-oneway":
    case "isolate-leader":
      return [2_000, 8_000];
    case "client-pause":
      // Longer than the session TTL, so the session expires while the worker sleeps.
      return [sessionTtlMs + 500, sessionTtlMs + 3_000];
    case "filewriter-kill":
      return [500, 3_000];
    case "restart-all":
      return [500, 3_000];
  }
}

/**
 * Plans the faults of a run. The same seed and options always give the same plan.
 * Every fault ends at least one second before `seconds`.
 */
export function makeSchedule(seed: number, options: ScheduleOptions): PlannedFault[] {
  const random = SeededRandom.derive(seed, "schedule");
  const endMs = options.seconds * 1000 - 1_000;
  const plan: PlannedFault[] = [];
  const serverKinds = options.faults.filter((k) => k !== "client-pause" && weights[k] > 0);
  let id = 0;
  let atMs = random.int(1_000, 3_000);
  while (serverKinds.length > 0) {
    const kind = random.weighted(serverKinds.map((k) => [k, weights[k]] as const));
    const [low, high] = durationBoundsMs(kind, options.sessionTtlMs);
    const durationMs = Math.min(random.int(low, high), endMs - atMs);
    if (durationMs < low / 2 || durationMs <= 0) break;
    plan.push(planOne(random, ++id, kind, atMs, durationMs, options));
    atMs += durationMs + random.int(1_000, 4_000);
  }
  if (options.faults.includes("client-pause") && options.clients > 0) {
    let clientAtMs = random.int(3_000, 8_000);
    while (true) {
      const [low, high] = durationBoundsMs("client-pause", options.sessionTtlMs);
      const durationMs = random.int(low, high);
      if (clientAtMs + durationMs > endMs) break;
      plan.push(planOne(random, ++id, "client-pause", clientAtMs, durationMs, options));
      clientAtMs += durationMs + random.int(5_000, 15_000);
    }
  }
  return plan.sort((a, b) => a.atMs - b.atMs || a.id - b.id);
}

function planOne(
  random: SeededRandom,
  id: number,
  kind: FaultKind,
  atMs: number,
  durationMs: number,
  options: ScheduleOptions,
): PlannedFault {
  const indices = Array.from({ length: options.servers }, (_, i) => i);
  const shuffled = random.shuffle(indices);
  const minoritySize = random.int(1, Math.floor((options.servers - 1) / 2));
  const sideA = shuffled.slice(0, minoritySize).sort((a, b) => a - b);
  const sideB = shuffled.slice(minoritySize).sort((a, b) => a - b);
  const leaderProbability = kind === "kill" ? 0.7 : 0.5;
  return {
    id,
    kind,
    atMs,
    durationMs,
    targetLeader: random.chance(leaderProbability),
    serverIndex: random.int(0, options.servers - 1),
    // One-way: either the minority cannot reach the majority, or the other way round.
    sides: kind === "partition-oneway" && random.chance(0.5) ? [sideB, sideA] : [sideA, sideB],
    workerIndex: random.int(0, Math.max(0, options.clients - 1)),
  };
}

/** One line per planned fault, for the run's output. */
export function describeSchedule(plan: readonly PlannedFault[]): string[] {
  return plan.map((fault) => {
    const at = (fault.atMs / 1000).toFixed(1).padStart(6);
    const lasting = `${(fault.durationMs / 1000).toFixed(1)}s`;
    return `${at}s  #${fault.id} ${fault.kind} for ${lasting} ${describeTarget(fault)}`;
  });
}

function describeTarget(fault: PlannedFault): string {
  switch (fault.kind) {
    case "kill":
    case "pause":
      return fault.targetLeader ? "(leader)" : `(server ${fault.serverIndex})`;
    case "partition":
      return `(${fault.sides[0].join(",")} | ${fault.sides[1].join(",")})`;
    case "partition-oneway":
      return `(${fault.sides[0].join(",")} -/-> ${fault.sides[1].join(",")})`;
    case "client-pause":
      return `(worker ${fault.workerIndex})`;
    default:
      return "";
  }
}

/**
 * Parses `--faults`: a comma-separated list of kinds, or `all`.
 * @throws {Error} on an unknown kind.
 */
export function parseFaultList(text: string): FaultKind[] {
  if (text.trim() === "all" || text.trim() === "") return [...allFaultKinds];
  const kinds = text.split(",").map((k) => k.trim()).filter((k) => k !== "");
  for (const kind of kinds) {
    if (!(allFaultKinds as readonly string[]).includes(kind)) {
      throw new Error(
        `Cannot use the fault list as '${kind}' is not a fault kind: expected some of ${
          allFaultKinds.join(",")
        } or all`,
      );
    }
  }
  return kinds as FaultKind[];
}
