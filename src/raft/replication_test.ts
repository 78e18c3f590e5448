/**
 * Log replication (Raft §5.3), commitment (§5.4.2, figure 8), flow control and fast
 * back-tracking, snapshots (§7).
 */

import assert from "node:assert/strict";
import { Cluster, text } from "./_test_harness.ts";
import type { Entry, Message } from "./types.ts";

function termsOf(entries: readonly Entry[]): string {
  return entries.map((entry) => `${entry.index}:${entry.term}`).join(" ");
}

function appendsFrom(messages: readonly Message[], from: string, to: string): Message[] {
  return messages.filter((message) =>
    message.type === "append" && message.from === from && message.to === to
  );
}

Deno.test("replication: proposals are committed and applied in order everywhere (§5.3)", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  cluster.elect("a");
  for (let k = 0; k < 20; k++) assert.ok(cluster.node("a").propose(text(`v${k}`)).ok);
  cluster.stabilize();
  cluster.tick(1);
  const expected = Array.from({ length: 20 }, (_, k) => `v${k}`);
  for (const id of ["a", "b", "c"]) {
    assert.deepEqual(cluster.appliedData(id), expected);
    assert.equal(cluster.node(id).status().commit, 21);
  }
});

Deno.test("replication: followers refuse proposals; the result names the leader", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  cluster.elect("a");
  const result = cluster.node("b").propose(text("x"));
  assert.deepEqual(result, { ok: false, reason: "notLeader", leader: "a" });
});

Deno.test("batching: many proposals travel in one append, bounded by entriesPerAppendMax", () => {
  const cluster = new Cluster(["a", "b", "c"], {
    entriesPerAppendMax: 16,
    inflightAppendsMax: 100,
  });
  cluster.elect("a");
  cluster.tick(1);
  const sentBefore = cluster.sent.length;
  for (let k = 0; k < 100; k++) cluster.node("a").propose(text(`v${k}`));
  cluster.stabilize();
  const appends = appendsFrom(cluster.sent.slice(sentBefore), "a", "b").filter((m) =>
    (m.entries ?? []).length > 0
  );
  // 100 entries in batches of at most 16: 7 appends, not 100.
  assert.equal(appends.length, 7);
  for (const append of appends) assert.ok((append.entries ?? []).length <= 16);
  assert.equal(cluster.node("b").status().commit, 101);
});

Deno.test("batching: bytesPerAppendMax bounds an append (at least one entry each)", () => {
  const cluster = new Cluster(["a", "b", "c"], {
    bytesPerAppendMax: 1000,
    inflightAppendsMax: 100,
  });
  cluster.elect("a");
  cluster.tick(1);
  const sentBefore = cluster.sent.length;
  for (let k = 0; k < 10; k++) cluster.node("a").propose(new Uint8Array(400));
  cluster.stabilize();
  const appends = appendsFrom(cluster.sent.slice(sentBefore), "a", "b").filter((m) =>
    (m.entries ?? []).length > 0
  );
  assert.equal(appends.length, 5);
  assert.equal(cluster.node("a").propose(new Uint8Array(1001)).ok, false);
});

Deno.test("pipelining: up to inflightAppendsMax appends in flight, then the leader waits", () => {
  const cluster = new Cluster(["a", "b", "c"], { entriesPerAppendMax: 1, inflightAppendsMax: 4 });
  cluster.elect("a");
  cluster.tick(1); // b and c are in replicate state now.
  // Hold every answer from b.
  cluster.drop = (message) => message.from === "b" && message.type === "appendResp";
  const sentBefore = cluster.sent.length;
  for (let k = 0; k < 10; k++) cluster.node("a").propose(text(`v${k}`));
  cluster.stabilize();
  const toB = appendsFrom(cluster.sent.slice(sentBefore), "a", "b").filter((m) =>
    (m.entries ?? []).length > 0
  );
  assert.equal(toB.length, 4, "four appends in flight without waiting for answers");
  // c answers, so everything commits, and b gets the rest after answering.
  assert.equal(cluster.node("a").status().commit, 11);
  cluster.drop = null;
  cluster.tick(3);
  assert.equal(cluster.node("b").status().commit, 11);
  assert.equal(cluster.appliedData("b").length, 10);
});

Deno.test("figure 8: an old-term entry on a majority is not committed until a current-term entry is (§5.4.2)", () => {
  const ids = ["s1", "s2", "s3", "s4", "s5"];
  const cluster = new Cluster(ids, { entriesPerAppendMax: 1 });
  // (a) s1 leads term 1 and replicates index 2 only to s2.
  cluster.elect("s1");
  cluster.tick(1);
  for (const id of ["s3", "s4", "s5"]) cluster.cutLink("s1", id);
  cluster.node("s1").propose(text("from-term-1"));
  cluster.stabilize();
  assert.equal(termsOf(cluster.stores.get("s2")!.entries), "1:1 2:1");
  // (b) s1 crashes; s5 wins term 2 with votes of s3, s4 and appends index 2 in its log only.
  cluster.heal();
  cluster.crash("s1");
  cluster.isolate("s2");
  cluster.drop = (message) => message.from === "s5" && message.type === "append";
  cluster.elect("s5");
  assert.equal(termsOf(cluster.stores.get("s5")!.entries), "1:1 2:2");
  cluster.crash("s5");
  // (c) s1 restarts and wins term 3 (s2, s3 vote); it replicates index 2 (term 1) to s3,
  // but its term-3 noop at index 3 is held back: index 2 is on a majority (s1, s2, s3).
  cluster.heal();
  cluster.start("s1");
  // The noop reaches nobody that could store it (a follower without index 2 rejects it).
  cluster.drop = (message) =>
    message.type === "append" && (message.entries ?? []).some((e) => e.index === 3) &&
    cluster.stores.get(message.to)!.entries.some((e) => e.index === 2);
  cluster.node("s1").campaign(); // term 2: s3 and s4 already voted for s5 in term 2.
  cluster.stabilize();
  cluster.elect("s1");
  cluster.tick(3, ["s1", "s2", "s3", "s4"]);
  for (const id of ["s1", "s2", "s3"]) {
    assert.equal(termsOf(cluster.stores.get(id)!.entries).startsWith("1:1 2:1"), true, id);
  }
  // Not committed: counting replicas only commits entries of the leader's term.
  assert.equal(cluster.node("s1").status().commit, 1);
  assert.equal(cluster.node("s1").status().term, 3);
  // (d) Indeed s5 could still be elected and overwrite index 2: it restarts with the
  // higher last term (2), so s2, s3, s4 vote for it.
  const fork = structuredClone(cluster.stores);
  cluster.crash("s1");
  cluster.drop = null;
  cluster.start("s5");
  cluster.node("s5").campaign(); // term 3: everyone voted for s1 already.
  cluster.stabilize();
  cluster.elect("s5"); // term 4
  cluster.tick(3, ["s2", "s3", "s4", "s5"]);
  for (const id of ["s2", "s3", "s4", "s5"]) {
    assert.equal(termsOf(cluster.stores.get(id)!.entries).startsWith("1:1 2:2"), true, id);
  }
  // (e) Had s1 instead replicated its term-3 entry to a majority, both would be committed.
  const other = new Cluster(ids, { entriesPerAppendMax: 1 });
  for (const id of ids) {
    other.stores.set(id, fork.get(id)!);
    other.start(id);
  }
  other.crash("s5");
  other.elect("s1");
  other.tick(3, ["s1", "s2", "s3", "s4"]);
  // (s1 restarted from the forked state, so its new entry is of term 4.)
  assert.equal(other.node("s1").status().commit, 4);
  assert.equal(termsOf(other.stores.get("s4")!.entries), "1:1 2:1 3:3 4:4");
  assert.deepEqual(other.appliedData("s4"), ["from-term-1"]);
});

Deno.test("fast back-tracking: a long divergent suffix is skipped in a few round trips", () => {
  const cluster = new Cluster(["a", "b", "c"], { entriesPerAppendMax: 8, inflightAppendsMax: 16 });
  cluster.elect("a");
  cluster.tick(1);
  // a, cut off, appends 60 entries of its term that never commit.
  cluster.isolate("a");
  for (let k = 0; k < 60; k++) cluster.node("a").propose(text(`lost${k}`));
  cluster.stabilize();
  // b leads a later term and commits 30 entries of its own.
  cluster.elect("b");
  for (let k = 0; k < 30; k++) cluster.node("b").propose(text(`kept${k}`));
  cluster.stabilize();
  cluster.tick(2, ["b", "c"]);
  // c takes over: its first probe to a is at its last index (32, term 2), far past the
  // point where a diverged (index 2).
  cluster.elect("c");
  cluster.heal();
  const sentBefore = cluster.sent.length;
  cluster.tick(3);
  const rejections = cluster.sent.slice(sentBefore).filter((m) =>
    m.type === "appendResp" && m.reject === true
  );
  assert.ok(rejections.length >= 1 && rejections.length <= 2, `${rejections.length} rejections`);
  assert.deepEqual(cluster.appliedData("a"), Array.from({ length: 30 }, (_, k) => `kept${k}`));
  assert.equal(cluster.node("a").status().lastIndex, cluster.node("b").status().lastIndex);
});

Deno.test("snapshot: a follower behind the compacted log gets the snapshot and catches up (§7)", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  cluster.elect("a");
  cluster.isolate("c");
  for (let k = 0; k < 10; k++) cluster.node("a").propose(text(`v${k}`));
  cluster.stabilize();
  cluster.tick(1, ["a", "b"]);
  const leader = cluster.node("a");
  const applied = leader.status().applied;
  assert.equal(applied, 11);
  const snapshot = { meta: { index: 8, term: 1, voters: ["a", "b", "c"] }, data: text("state@8") };
  leader.compact(snapshot);
  assert.equal(leader.status().firstIndex, 9);
  cluster.heal();
  const sentBefore = cluster.sent.length;
  cluster.tick(3);
  const snapshots = cluster.sent.slice(sentBefore).filter((m) => m.type === "snapshot");
  assert.equal(snapshots.length, 1);
  assert.equal(snapshots[0]!.to, "c");
  assert.deepEqual(cluster.stores.get("c")!.snapshot, snapshot);
  assert.deepEqual(cluster.stores.get("c")!.entries.map((e) => e.index), [9, 10, 11]);
  assert.equal(cluster.node("c").status().commit, 11);
  assert.equal(cluster.node("c").status().applied, 11);
  // c applied entries after the snapshot only.
  assert.deepEqual(cluster.applied.get("c")!.map((e) => e.index), [9, 10, 11]);
  // A restart of c comes back from its snapshot and log.
  cluster.crash("c");
  cluster.start("c");
  cluster.tick(2);
  assert.equal(cluster.node("c").status().commit, 11);
  assert.equal(cluster.node("c").status().firstIndex, 9);
});

Deno.test("snapshot: a lost snapshot message is sent again after the wait times out", () => {
  const cluster = new Cluster(["a", "b", "c"]);
  cluster.elect("a");
  cluster.isolate("c");
  for (let k = 0; k < 5; k++) cluster.node("a").propose(text(`v${k}`));
  cluster.stabilize();
  cluster.tick(1, ["a", "b"]);
  cluster.node("a").compact({
    meta: { index: 6, term: 1, voters: ["a", "b", "c"] },
    data: text("s"),
  });
  cluster.heal();
  cluster.dropTypes.add("snapshot");
  cluster.tick(5);
  assert.equal(cluster.node("c").status().commit, 1);
  cluster.dropTypes.clear();
  cluster.tick(25);
  assert.equal(cluster.node("c").status().commit, 6);
});
