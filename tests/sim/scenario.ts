/**
 * Hand-written scenarios on the same simulator as the random runs (STYLE.md, convention
 * 5), with every safety check active. One command per line; `#` starts a comment.
 *
 * ```text
 * nodes 3 [preVote] [checkQuorum] [lease] [election=10] [heartbeat=1]
 *         [entriesPerAppend=64] [inflight=8] [snapshotEvery=1000]
 * partition 1|2,3        # blocks every link between the groups
 * block 1>2              # one-way
 * isolate 2
 * heal
 * tick N [on 1,2]        # N rounds: each (listed) node ticks once, then messages settle
 * stabilize              # deliver messages until none is in flight
 * campaign 1
 * propose 1|leader key=value
 * transfer 1 2
 * read 2 as r1
 * crash 2
 * restart 2
 * disk hold 1            # 1's writes stay in progress (its early appends still leave)
 * disk release 1         # completes the write in progress; a crash loses it instead
 * expect leader 1|none|one
 * expect role 2 follower
 * expect term 1 3
 * expect commit 1 5      # also: expect applied 1 5; expect disk 1 5 (last persisted index)
 * expect value 1 key value
 * expect read r1 served|failed|pending
 * ```
 *
 * @module
 */

import type { NodeId } from "../../src/raft/mod.ts";
import { type SimParameters, Simulation } from "./simulation.ts";

/** A scenario line that failed, with its line number. */
export class ScenarioError extends Error {
  constructor(line: number, text: string, reason: string) {
    super(`Scenario line ${line} (${text.trim()}): ${reason}`);
    this.name = "ScenarioError";
  }
}

/**
 * Runs a scenario; returns the simulation for further assertions.
 * @throws {ScenarioError} when a line is malformed or an expectation fails.
 * @throws {SimViolation} when a safety property breaks.
 */
export function runScenario(script: string, seed = 1): Simulation {
  const lines = script.split("\n");
  let simulation: Simulation | null = null;
  for (const [offset, raw] of lines.entries()) {
    const text = raw.replace(/#.*/, "").trim();
    if (text === "") continue;
    const lineNumber = offset + 1;
    const words = text.split(/\s+/);
    const fail = (reason: string): never => {
      throw new ScenarioError(lineNumber, raw, reason);
    };
    if (words[0] === "nodes") {
      if (simulation !== null) fail("nodes must come once, first");
      simulation = new Simulation({ seed, manual: true, parameters: parseNodes(words, fail) });
      continue;
    }
    if (simulation === null) fail("the first command must be `nodes N`");
    runLine(simulation!, words, fail);
  }
  if (simulation === null) throw new ScenarioError(0, "", "empty scenario");
  return simulation;
}

function parseNodes(words: string[], fail: (reason: string) => never): Partial<SimParameters> {
  const nodeCount = Number(words[1]);
  if (![1, 3, 5, 7].includes(nodeCount)) fail("node count must be 1, 3, 5 or 7");
  const parameters: {
    -readonly [K in keyof SimParameters]?: SimParameters[K];
  } = {
    nodeCount,
    electionTicks: 10,
    heartbeatTicks: 1,
    preVote: false,
    checkQuorum: false,
    readMode: "safe",
    leaseDriftTicks: 1,
    entriesPerAppendMax: 64,
    bytesPerAppendMax: 1 << 20,
    inflightAppendsMax: 8,
    snapshotEvery: 1000,
  };
  for (const word of words.slice(2)) {
    const [name, value] = word.split("=");
    const number = Number(value);
    switch (name) {
      case "preVote":
        parameters.preVote = true;
        break;
      case "checkQuorum":
        parameters.checkQuorum = true;
        break;
      case "lease":
        parameters.checkQuorum = true;
        parameters.readMode = "lease";
        parameters.leaseDriftTicks = 2;
        break;
      case "election":
        parameters.electionTicks = number;
        break;
      case "heartbeat":
        parameters.heartbeatTicks = number;
        break;
      case "entriesPerAppend":
        parameters.entriesPerAppendMax = number;
        break;
      case "inflight":
        parameters.inflightAppendsMax = number;
        break;
      case "snapshotEvery":
        parameters.snapshotEvery = number;
        break;
      default:
        fail(`unknown option ${word}`);
    }
  }
  return parameters;
}

function runLine(simulation: Simulation, words: string[], fail: (reason: string) => never): void {
  const node = (word: string | undefined): NodeId => {
    if (word === undefined || !simulation.ids.includes(word)) fail(`unknown node ${word}`);
    return word!;
  };
  switch (words[0]) {
    case "partition":
      simulation.partition((words[1] ?? "").split("|").map((group) => group.split(",").map(node)));
      return;
    case "block": {
      const [from, to] = (words[1] ?? "").split(">");
      simulation.block(node(from), node(to));
      return;
    }
    case "isolate":
      simulation.isolate(node(words[1]));
      return;
    case "heal":
      simulation.heal();
      return;
    case "tick": {
      const rounds = Number(words[1]);
      if (!Number.isSafeInteger(rounds) || rounds < 1 || rounds > 100_000) {
        fail("tick needs a count");
      }
      const ids = words[2] === "on" ? (words[3] ?? "").split(",").map(node) : simulation.ids;
      for (let round = 0; round < rounds; round++) {
        for (const id of ids) simulation.tickNode(id);
        simulation.stabilize();
      }
      return;
    }
    case "stabilize":
      simulation.stabilize();
      return;
    case "campaign":
      simulation.campaign(node(words[1]));
      return;
    case "propose": {
      const target = words[1] === "leader" ? onlyLeader(simulation, fail) : node(words[1]);
      const [key, value] = (words[2] ?? "").split("=");
      if (key === undefined || value === undefined) fail("propose needs key=value");
      if (simulation.propose(target, key!, value!) === null) {
        fail(`node ${target} refused the proposal`);
      }
      return;
    }
    case "transfer":
      simulation.transfer(node(words[1]), node(words[2]));
      return;
    case "read": {
      if (words[2] !== "as" || words[3] === undefined) fail("read needs `as NAME`");
      const requestId = simulation.read(node(words[1]));
      readNames.set(simulation, { ...(readNames.get(simulation) ?? {}), [words[3]!]: requestId });
      return;
    }
    case "crash":
      simulation.crash(node(words[1]));
      return;
    case "restart":
      simulation.restart(node(words[1]));
      return;
    case "disk":
      if (words[1] === "hold") simulation.holdDisk(node(words[2]));
      else if (words[1] === "release") simulation.releaseDisk(node(words[2]));
      else fail("disk needs hold or release");
      return;
    case "expect":
      expect(simulation, words.slice(1), node, fail);
      return;
    default:
      fail(`unknown command ${words[0]}`);
  }
}

const readNames = new WeakMap<Simulation, Record<string, string>>();

function onlyLeader(simulation: Simulation, fail: (reason: string) => never): NodeId {
  const leaders = simulation.leaders();
  if (leaders.length !== 1) fail(`expected one leader, found [${leaders.join(",")}]`);
  return leaders[0]!;
}

function expect(
  simulation: Simulation,
  words: string[],
  node: (word: string | undefined) => NodeId,
  fail: (reason: string) => never,
): void {
  const check = (actual: unknown, expected: unknown, what: string) => {
    if (String(actual) !== String(expected)) fail(`expected ${what} ${expected}, found ${actual}`);
  };
  switch (words[0]) {
    case "leader": {
      const leaders = simulation.leaders();
      if (words[1] === "none") check(leaders.join(","), "", "no leader; leaders");
      else if (words[1] === "one") check(leaders.length, 1, "leader count");
      else check(leaders.join(","), node(words[1]), "leader");
      return;
    }
    case "role":
      check(simulation.node(node(words[1])).role, words[2], `role of ${words[1]}`);
      return;
    case "term":
      check(simulation.node(node(words[1])).raft?.status().term, words[2], `term of ${words[1]}`);
      return;
    case "commit":
      check(
        simulation.node(node(words[1])).raft?.status().commit,
        words[2],
        `commit of ${words[1]}`,
      );
      return;
    case "applied":
      check(simulation.node(node(words[1])).applied, words[2], `applied index of ${words[1]}`);
      return;
    case "disk": {
      const disk = simulation.node(node(words[1])).disk;
      const last = (disk.snapshot?.meta.index ?? 0) + disk.entries.length;
      check(last, words[2], `last persisted index of ${words[1]}`);
      return;
    }
    case "value":
      check(
        simulation.readValue(node(words[1]), words[2] ?? ""),
        words[3],
        `value of ${words[2]} at ${words[1]}`,
      );
      return;
    case "read": {
      const requestId = readNames.get(simulation)?.[words[1] ?? ""];
      if (requestId === undefined) fail(`unknown read ${words[1]}`);
      check(simulation.readOutcomes.get(requestId!), words[2], `outcome of read ${words[1]}`);
      return;
    }
    default:
      fail(`unknown expectation ${words[0]}`);
  }
}
