/**
 * Leader election (Raft §5.2), pre-vote (thesis §9.6) and check-quorum (thesis §6.2).
 */

import assert from "node:assert/strict";
import { Cluster } from "./_test_harness.ts";
import { RaftNode } from "./node.ts";
import { seededRandom, testOptions } from "./_test_harness.ts";

Deno.test("election: a node that times out wins a term and the others follow (§5.2)", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  cluster.tick(25, ["a"]);
  // a timed out in [10, 20) ticks; b and c never ticked, so they vote for it.
  assert.deepEqual(cluster.leaders(), ["a"]);
  const status = cluster.node("a").status();
  assert.equal(status.term, 1);
  for (const id of ["b", "c"]) {
    assert.equal(cluster.node(id).status().leader, "a");
    assert.equal(cluster.node(id).status().term, 1);
  }
  // The leader's noop entry (§8) is committed everywhere.
  cluster.tick(2);
  for (const id of ["a", "b", "c"]) assert.equal(cluster.node(id).status().commit, 1);
});

Deno.test("election: randomized timeout stays in [electionTicks, 2 * electionTicks)", () => {
  for (let seed = 1; seed < 50; seed++) {
    const node = new RaftNode(
      testOptions("a", ["a", "b", "c"], { random: seededRandom(seed) }),
      { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] },
    );
    let ticks = 0;
    while (node.status().role === "follower" && ticks < 100) {
      node.tick();
      ticks++;
    }
    assert.ok(ticks >= 10 && ticks < 20, `seed ${seed}: campaigned after ${ticks} ticks`);
  }
});

Deno.test("election: a vote is granted once per term (§5.2) and only to up-to-date logs (§5.4.1)", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  cluster.elect("a");
  cluster.node("a").propose(new Uint8Array([1]));
  cluster.stabilize();
  // c misses the next entry.
  cluster.isolate("c");
  cluster.node("a").propose(new Uint8Array([2]));
  cluster.stabilize();
  cluster.heal();
  cluster.isolate("a");
  // c has a shorter log: b refuses its vote, so c cannot win.
  cluster.node("c").campaign();
  cluster.stabilize();
  assert.notEqual(cluster.node("c").status().role, "leader");
  // b has the longest log among b and c: it wins.
  cluster.node("b").campaign();
  cluster.stabilize();
  assert.equal(cluster.node("b").status().role, "leader");
});

Deno.test("election: a candidate steps down on hearing a leader of its term (§5.2)", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  cluster.elect("a");
  const before = cluster.node("a").status().term;
  cluster.isolate("c");
  cluster.node("c").campaign();
  cluster.stabilize();
  assert.equal(cluster.node("c").status().role, "candidate");
  cluster.heal();
  // Without pre-vote and check-quorum, c's higher term deposes a; someone wins a later term.
  cluster.tick(40);
  assert.equal(cluster.leaders().length, 1);
  assert.ok(cluster.node(cluster.leaders()[0]!).status().term > before);
});

Deno.test("single node: elects itself at once and commits alone", () => {
  const cluster = new Cluster(["solo"]);
  cluster.stabilize();
  assert.deepEqual(cluster.leaders(), ["solo"]);
  const result = cluster.node("solo").propose(new TextEncoder().encode("x"));
  assert.ok(result.ok);
  cluster.stabilize();
  assert.equal(cluster.node("solo").status().commit, 2);
  assert.deepEqual(cluster.appliedData("solo"), ["x"]);
  // Reads are served at once.
  cluster.node("solo").readIndex("r1");
  cluster.stabilize();
  assert.deepEqual(cluster.readStates.get("solo"), [{ requestId: "r1", index: 2 }]);
  // It comes back as leader after a restart, with its log.
  cluster.crash("solo");
  cluster.start("solo");
  cluster.stabilize();
  assert.deepEqual(cluster.leaders(), ["solo"]);
  assert.equal(cluster.node("solo").status().commit, 3);
});

Deno.test("pre-vote: a partitioned node rejoining does not bump the term or depose the leader (thesis §9.6)", () => {
  const cluster = new Cluster(["a", "b", "c"], { preVote: true, checkQuorum: true });
  cluster.elect("a");
  const term = cluster.node("a").status().term;
  cluster.isolate("c");
  // c times out again and again but its pre-votes go nowhere: its term stays.
  for (let tick = 0; tick < 100; tick++) {
    cluster.node("c").tick();
    cluster.node("a").tick();
    cluster.node("b").tick();
    cluster.stabilize();
  }
  assert.equal(cluster.node("c").status().term, term);
  assert.equal(cluster.node("c").status().role, "preCandidate");
  cluster.heal();
  cluster.tick(5);
  assert.deepEqual(cluster.leaders(), ["a"]);
  assert.equal(cluster.node("a").status().term, term);
  assert.equal(cluster.node("c").status().leader, "a");
  assert.equal(cluster.node("c").status().term, term);
});

Deno.test("pre-vote: without it a rejoining node disrupts the leader (the problem pre-vote solves)", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  cluster.elect("a");
  const term = cluster.node("a").status().term;
  cluster.isolate("c");
  cluster.tick(30, ["c"]);
  assert.ok(cluster.node("c").status().term > term);
  cluster.heal();
  // c's next vote request carries its higher term: a steps down although it was healthy.
  cluster.tick(20, ["c"]);
  assert.notEqual(cluster.node("a").status().role, "leader");
  assert.ok(cluster.node("a").status().term > term);
});

Deno.test("check-quorum: a leader isolated from the majority steps down (thesis §6.2)", () => {
  const cluster = new Cluster(["a", "b", "c"], { preVote: true, checkQuorum: true });
  cluster.elect("a");
  cluster.isolate("a");
  cluster.tick(9, ["a"]);
  assert.equal(cluster.node("a").status().role, "leader");
  cluster.tick(12, ["a"]);
  assert.equal(cluster.node("a").status().role, "follower");
  assert.equal(cluster.node("a").status().leader, null);
  // b and c elect a new leader among themselves.
  cluster.tick(25, ["b", "c"]);
  assert.equal(cluster.leaders().filter((id) => id !== "a").length, 1);
});

Deno.test("check-quorum: followers with a live leader ignore (pre)votes (thesis §4.2.3)", () => {
  const cluster = new Cluster(["a", "b", "c"], { checkQuorum: true });
  cluster.elect("a");
  const term = cluster.node("a").status().term;
  // c campaigns on its own (without pre-vote): b heard from a recently and ignores it.
  cluster.node("c").campaign();
  cluster.stabilize();
  assert.equal(cluster.node("b").status().term, term);
  assert.equal(cluster.node("b").status().leader, "a");
  assert.equal(cluster.node("a").status().role, "leader");
  assert.equal(cluster.node("c").status().role, "candidate");
  // c rejoins with the leader's next heartbeat... a learns of c's higher term only when
  // c answers; a stays leader until then, and the cluster converges to one leader.
  cluster.tick(40);
  assert.equal(cluster.leaders().length, 1);
});

Deno.test("terms: a stale leader learns of a newer term from a follower's answer and steps down", () => {
  const cluster = new Cluster(["a", "b", "c"], { preVote: true, checkQuorum: true });
  cluster.elect("a");
  cluster.isolate("a");
  cluster.tick(25, ["b", "c"]);
  const newLeader = cluster.leaders().find((id) => id !== "a");
  assert.ok(newLeader !== undefined);
  assert.equal(cluster.node("a").status().role, "leader");
  cluster.heal();
  // a's heartbeat reaches b and c, which answer with their newer term.
  cluster.tick(2, ["a"]);
  assert.equal(cluster.node("a").status().role, "follower");
  assert.equal(cluster.node("a").status().term, cluster.node(newLeader).status().term);
  assert.deepEqual(cluster.leaders(), [newLeader]);
});
