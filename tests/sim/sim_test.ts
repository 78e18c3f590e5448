/**
 * The deterministic simulation in the default test run: many seeds with faults, the
 * regression seeds, and hand scenarios. Longer runs: `deno task sim --seeds N`.
 */

import assert from "node:assert/strict";
import { runSeed, type SimResult } from "./simulation.ts";
import { regressions } from "./regressions.ts";
import { runScenario } from "./scenario.ts";

/** Seeds and steps of the default run (about 10 s on an idle core, 30 s on a busy one). */
const defaultSeeds = 1000;
const defaultSteps = 4000;

function explain(result: SimResult): string {
  return `seed ${result.seed}: ${result.violation}\nparameters: ${result.parameters}\n` +
    `${result.trace.slice(-60).join("\n")}\nreplay: deno task sim --seed ${result.seed}`;
}

Deno.test(`simulation: ${defaultSeeds} seeds x ${defaultSteps} steps keep every property`, () => {
  let elections = 0;
  let writes = 0;
  let reads = 0;
  let snapshots = 0;
  let crashes = 0;
  for (let seed = 1; seed <= defaultSeeds; seed++) {
    const result = runSeed(seed, defaultSteps);
    assert.ok(result.ok, explain(result));
    elections += result.stats.elections;
    writes += result.stats.writesAcknowledged;
    reads += result.stats.readsServed;
    snapshots += result.stats.snapshotsInstalled;
    crashes += result.stats.crashes;
  }
  // The runs exercise what they claim to (not vacuous).
  assert.ok(elections > defaultSeeds, `elections: ${elections}`);
  assert.ok(writes > defaultSeeds * 10, `acknowledged writes: ${writes}`);
  assert.ok(reads > defaultSeeds, `reads: ${reads}`);
  assert.ok(snapshots > defaultSeeds / 10, `snapshot installs: ${snapshots}`);
  assert.ok(crashes > defaultSeeds, `crashes: ${crashes}`);
});

Deno.test("simulation: each cluster size (1, 3, 5, 7) runs clean", () => {
  for (const nodes of [1, 3, 5, 7]) {
    for (let seed = 10_001; seed <= 10_010; seed++) {
      const result = runSeed(seed, defaultSteps, { nodes });
      assert.ok(result.ok, explain(result));
      assert.ok(
        result.stats.writesAcknowledged > 0,
        `nodes ${nodes} seed ${seed}: no write acknowledged`,
      );
    }
  }
});

Deno.test("simulation: the lock state machine of src/lock keeps its invariants under faults", () => {
  let writes = 0;
  for (let seed = 20_001; seed <= 20_100; seed++) {
    const result = runSeed(seed, 2000, { machine: "lock" });
    assert.ok(result.ok, explain(result));
    writes += result.stats.writesAcknowledged;
  }
  assert.ok(writes > 1000, `acknowledged lock commands: ${writes}`);
});

Deno.test("simulation: regression seeds", () => {
  for (const regression of regressions) {
    const result = runSeed(regression.seed, regression.steps, {
      machine: regression.machine ?? "kv",
      ...(regression.nodes === undefined ? {} : { nodes: regression.nodes }),
    });
    assert.ok(result.ok, `${regression.note}\n${explain(result)}`);
  }
});

Deno.test("simulation: a run is a pure function of its seed", () => {
  const first = runSeed(4242, 2000);
  const second = runSeed(4242, 2000);
  assert.deepEqual(first.stats, second.stats);
  assert.notDeepEqual(runSeed(4243, 2000).stats, first.stats);
});

Deno.test("scenario: a minority partition cannot commit; healing converges", () => {
  const simulation = runScenario(`
    nodes 3 preVote checkQuorum
    campaign 1
    stabilize
    expect leader 1
    propose 1 a=1
    tick 2
    expect value 3 a 1
    partition 1|2,3
    propose 1 b=2          # accepted by the old leader, never committed
    tick 30
    expect role 1 follower # check quorum: it stepped down
    expect leader one
    propose leader c=3
    tick 2
    expect value 2 c 3
    heal
    tick 5
    expect value 1 c 3
    expect value 1 b null  # the uncommitted write was overwritten
  `);
  assert.equal(simulation.leaders().length, 1);
});

Deno.test("scenario: crash and restart recover exactly what was persisted", () => {
  runScenario(`
    nodes 3
    campaign 1
    stabilize
    propose 1 x=1
    propose 1 y=2
    tick 2
    crash 2
    propose 1 z=3
    tick 2
    expect commit 1 4
    restart 2
    expect applied 2 3     # re-applied from its log up to its persisted commit index
    tick 2
    expect applied 2 4     # then caught up
    expect value 2 z 3
    crash 1
    crash 2
    crash 3
    restart 1
    restart 2
    restart 3
    tick 40
    expect leader one
    expect value 3 x 1
    expect value 3 z 3
  `);
});

Deno.test("scenario: a lagging follower is caught up by snapshot after compaction", () => {
  runScenario(`
    nodes 3 snapshotEvery=3
    campaign 1
    stabilize
    isolate 3
    propose 1 a=1
    propose 1 b=2
    propose 1 c=3
    propose 1 d=4
    tick 3
    heal
    tick 5
    expect applied 3 5
    expect value 3 d 4
  `);
});

Deno.test("scenario: leadership transfer, and ReadIndex on a follower", () => {
  runScenario(`
    nodes 5 preVote checkQuorum
    campaign 1
    stabilize
    propose 1 k=v
    tick 2
    transfer 1 4
    stabilize
    expect leader 4
    read 2 as r
    tick 2
    expect read r served
    partition 4|1,2,3,5
    read 4 as stale
    tick 25 on 4
    expect read stale failed
  `);
});

Deno.test("scenario: a one-way partition (the leader cannot hear followers) ends its leadership", () => {
  runScenario(`
    nodes 3 preVote checkQuorum
    campaign 1
    stabilize
    block 2>1
    block 3>1
    tick 20 on 1
    expect role 1 follower # check quorum: it hears no one
    tick 60
    expect leader one
    heal
    tick 30
    expect leader one
  `);
});

Deno.test("scenario: lease reads serve without a round and stop on a deposed leader", () => {
  runScenario(`
    nodes 3 preVote lease
    tick 30
    expect leader one
    propose leader a=1
    tick 2
  `);
  runScenario(`
    nodes 3 lease
    tick 9                 # restarted nodes honour a possible lease: votes wait 10 ticks
    tick 1 on 1
    tick 1 on 2,3
    campaign 1
    stabilize
    expect leader 1
    tick 3
    isolate 1
    read 1 as fresh
    stabilize
    expect read fresh served
    tick 10 on 1
    read 1 as late
    stabilize
    expect read late pending
  `);
});

Deno.test("scenario: followers commit a leader's entry before its own write; the leader crashes before persisting", () => {
  // Thesis §10.2.1: the leader's appends leave while its disk write is in progress. A
  // majority of followers persisted the entry, so it is committed even though the leader
  // never wrote it, and it must survive the leader's crash.
  const simulation = runScenario(`
    nodes 3
    campaign 1
    stabilize
    propose 1 a=1
    tick 2
    expect commit 1 2
    disk hold 1
    propose 1 b=2
    stabilize
    expect disk 1 2        # the leader's write of index 3 is still in progress
    expect disk 2 3
    expect disk 3 3
    expect commit 1 3      # two followers persisted it: a majority, without the leader
    expect applied 1 3     # committed, so applied while the leader's write still runs
    crash 1                # the write in progress is lost
    tick 40
    expect leader one
    expect role 1 follower
    expect value 2 b 2
    expect value 3 b 2
    restart 1
    expect disk 1 2
    tick 5
    expect value 1 b 2
    expect disk 1 4        # b from the new leader, and its noop
  `);
  assert.equal(simulation.leaders().length, 1);
  assert.notEqual(simulation.leaders()[0], "1");
});

Deno.test("scenario: a leader crashes before persisting an append only one follower got", () => {
  const simulation = runScenario(`
    nodes 3
    campaign 1
    stabilize
    propose 1 a=1
    tick 2
    block 1>3
    disk hold 1
    propose 1 b=2
    stabilize
    expect disk 1 2
    expect disk 2 3
    expect disk 3 2
    expect commit 1 2      # one follower is not a majority without the leader's own copy
    crash 1
    heal
    tick 40
    expect leader 2        # 3's log is behind 2's, so only 2 can win
    expect value 3 b 2     # the new leader commits the entry with its noop (§5.4.2)
    restart 1
    tick 5
    expect value 1 b 2
  `);
  assert.deepEqual(simulation.leaders(), ["2"]);
});

Deno.test("scenario: a leader's entry that reached no disk is lost and replaced safely", () => {
  runScenario(`
    nodes 3
    campaign 1
    stabilize
    propose 1 a=1
    tick 2
    isolate 1
    disk hold 1
    propose 1 b=2          # the write is held
    stabilize              # the appends are dropped
    crash 1
    heal
    tick 40
    expect leader one
    propose leader c=3     # index 4 after the new leader's noop at 3
    tick 2
    restart 1
    tick 5
    expect value 1 b null
    expect value 1 c 3
    expect disk 1 4
  `);
});

Deno.test("scenario: a leader alone with a slow disk commits only after its write", () => {
  runScenario(`
    nodes 1
    stabilize
    expect commit 1 1
    disk hold 1
    propose 1 a=1
    expect commit 1 1
    expect disk 1 1
    disk release 1
    expect disk 1 2
    expect commit 1 2
    expect value 1 a 1
  `);
});

Deno.test("sim CLI: a bad number is a usage error, not a silent pass", async () => {
  const { main } = await import("./main.ts");
  for (
    const args of [["--seeds", "abc"], ["--first", "x"], ["--seed", "abc"], ["--seeds", "1.5"]]
  ) {
    await assert.rejects(main(args), /must be a whole number/, args.join(" "));
  }
});
