/**
 * The leader writes to its disk in parallel with replicating (thesis §10.2.1): its
 * appends may leave before its own write completes (`Ready.messagesBeforePersist`), and
 * it counts itself toward a commit quorum only for entries it has persisted, which it
 * learns at `advance()`.
 */

import assert from "node:assert/strict";
import { Cluster, testOptions, text } from "./_test_harness.ts";
import { RaftNode } from "./node.ts";
import type { Message, Ready } from "./types.ts";

function isAppendWithEntries(message: Message): boolean {
  return message.type === "append" && (message.entries ?? []).length > 0;
}

Deno.test("parallel persist: a leader alone with a slow disk does not commit before its write", () => {
  const node = new RaftNode(testOptions("a", ["a"]), {
    hardState: { term: 0, vote: null, commit: 0 },
    snapshot: null,
    entries: [],
  });
  // The first Ready carries the new leader's noop; it is not committed before its write.
  const first = node.ready();
  assert.deepEqual(first.entries.map((entry) => entry.kind), ["noop"]);
  assert.deepEqual(first.committedEntries, []);
  assert.equal(node.status().commit, 0);
  node.advance();
  assert.equal(node.status().commit, 1);
  assert.deepEqual(node.ready().committedEntries.map((entry) => entry.index), [1]);
  node.advance();

  const proposed = node.propose(text("x"));
  assert.ok(proposed.ok);
  const ready = node.ready();
  assert.deepEqual(ready.entries.map((entry) => entry.index), [2]);
  assert.deepEqual(ready.committedEntries, []);
  assert.deepEqual(ready.messagesBeforePersist, []);
  // The write is in progress: time passes, nothing commits.
  for (let k = 0; k < 5; k++) node.tick();
  assert.equal(node.status().commit, 1);
  assert.equal(node.hasReady(), false);
  node.advance();
  assert.equal(node.status().commit, 2);
  const next = node.ready();
  assert.deepEqual(next.committedEntries.map((entry) => entry.index), [2]);
  assert.equal(next.hardState?.commit, 2);
  node.advance();
});

/** Elects `a` in a settled 3-node cluster and proposes one entry; returns a's Ready. */
function proposeAtSettledLeader(cluster: Cluster): { ready: Ready; index: number } {
  cluster.elect("a");
  cluster.tick(1);
  const leader = cluster.node("a");
  const proposed = leader.propose(text("x"));
  assert.ok(proposed.ok);
  const ready = leader.ready();
  assert.deepEqual(ready.entries.map((entry) => entry.index), [proposed.index]);
  return { ready, index: proposed.index };
}

Deno.test("parallel persist: the leader's appends leave before its write; nothing else does", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  const { ready, index } = proposeAtSettledLeader(cluster);
  assert.deepEqual(ready.messagesBeforePersist.map((message) => [message.type, message.to]), [
    ["append", "b"],
    ["append", "c"],
  ]);
  for (const message of ready.messagesBeforePersist) {
    assert.deepEqual(message.entries?.map((entry) => entry.index), [index]);
  }
  assert.ok(!ready.messages.some(isAppendWithEntries));
  cluster.node("a").advance();
});

Deno.test("parallel persist: two followers' acks commit before the leader's own write completes", () => {
  // Correct: a majority (b and c) persisted the entry before acknowledging it.
  const cluster = new Cluster(["a", "b", "c"]);
  const { ready, index } = proposeAtSettledLeader(cluster);
  const leader = cluster.node("a");
  for (const message of ready.messagesBeforePersist) cluster.deliver(message);
  // b and c persist and answer; a's write is still in progress (no advance yet), so the
  // harness carries out only the followers' Readies.
  cluster.stabilize();
  assert.equal(cluster.stores.get("b")!.entries.at(-1)?.index, index);
  assert.equal(cluster.stores.get("c")!.entries.at(-1)?.index, index);
  assert.equal(leader.status().commit, index);
  assert.equal(leader.hasReady(), false);
  leader.advance();
  const next = leader.ready();
  assert.deepEqual(next.committedEntries.map((entry) => entry.index), [index]);
  leader.advance();
});

Deno.test("parallel persist: one follower's ack is not a majority without the leader's write", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  const { ready, index } = proposeAtSettledLeader(cluster);
  const leader = cluster.node("a");
  cluster.isolate("c");
  for (const message of ready.messagesBeforePersist) cluster.deliver(message);
  cluster.stabilize();
  assert.equal(cluster.stores.get("b")!.entries.at(-1)?.index, index);
  assert.equal(leader.status().commit, index - 1);
  // The leader's write completes: b and a are a majority.
  leader.advance();
  assert.equal(leader.status().commit, index);
  assert.deepEqual(leader.ready().committedEntries.map((entry) => entry.index), [index]);
  leader.advance();
});

Deno.test("parallel persist: votes, responses and heartbeats wait for the write", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  cluster.node("a").campaign();
  const campaign = cluster.node("a").ready();
  assert.deepEqual(campaign.messagesBeforePersist, []);
  assert.deepEqual(campaign.messages.map((message) => message.type), ["vote", "vote"]);
  for (const message of campaign.messages) cluster.node(message.to).step(message);
  cluster.node("a").advance();
  for (const id of ["b", "c"]) {
    const answer = cluster.node(id).ready();
    assert.deepEqual(answer.messagesBeforePersist, []);
    assert.deepEqual(answer.messages.map((message) => message.type), ["voteResp"]);
    cluster.node(id).advance();
    for (const message of answer.messages) cluster.node("a").step(message);
  }
  assert.equal(cluster.node("a").status().role, "leader");
  cluster.stabilize();
  cluster.tick(1);
  // A follower's append response and a leader's heartbeat never go early.
  const leader = cluster.node("a");
  assert.ok(leader.propose(text("y")).ok);
  const ready = leader.ready();
  for (const message of ready.messagesBeforePersist) {
    assert.equal(message.type, "append");
    cluster.node(message.to).step(message);
  }
  leader.advance();
  const follower = cluster.node("b").ready();
  assert.deepEqual(follower.messagesBeforePersist, []);
  assert.deepEqual(follower.messages.map((message) => message.type), ["appendResp"]);
  cluster.node("b").advance();
  leader.tick();
  const heartbeats = leader.ready();
  assert.ok(!heartbeats.messagesBeforePersist.some((message) => message.type === "heartbeat"));
  assert.ok(heartbeats.messages.some((message) => message.type === "heartbeat"));
  leader.advance();
});

Deno.test("during a write: entries the followers commit are taken early, only once, and only if written", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  const { ready, index } = proposeAtSettledLeader(cluster);
  const leader = cluster.node("a");
  assert.deepEqual(leader.takeCommittedEarly(), [], "nothing is committed yet");
  // Proposed while the write of `index` runs: its appends go out at once.
  const later = leader.propose(text("later"));
  assert.ok(later.ok);
  const early = leader.takeEarlyMessages();
  assert.deepEqual(early.map((message) => [message.type, message.to]), [
    ["append", "b"],
    ["append", "c"],
  ]);
  for (const message of early) {
    assert.ok(message.entries?.some((entry) => entry.index === later.index));
  }
  for (const message of [...ready.messagesBeforePersist, ...early]) cluster.deliver(message);
  cluster.stabilize(); // b and c persist both entries and acknowledge them.
  assert.equal(leader.status().commit, later.index, "two followers are a majority");
  // `index` is being written, `later` is in no write yet: only `index` may be applied.
  assert.deepEqual(leader.takeCommittedEarly().map((entry) => entry.index), [index]);
  assert.deepEqual(leader.takeCommittedEarly(), [], "an entry is taken once");
  leader.advance();
  const next = leader.ready();
  assert.deepEqual(next.entries.map((entry) => entry.index), [later.index]);
  assert.deepEqual(
    next.committedEntries.map((entry) => entry.index),
    [later.index],
    "the next Ready hands out only what was not taken early",
  );
  leader.advance();
});

Deno.test("during a write: nothing is taken early after a Ready that changes the role", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  const a = cluster.node("a");
  a.campaign();
  const campaign = a.ready(); // Becomes candidate: a soft state change.
  assert.ok(campaign.softState !== undefined);
  assert.deepEqual(a.takeEarlyMessages(), []);
  assert.deepEqual(a.takeCommittedEarly(), []);
  a.advance();
  assert.deepEqual(a.takeEarlyMessages(), [], "no Ready awaits advance()");
  assert.deepEqual(a.takeCommittedEarly(), []);
});
