/**
 * Message handling by term (Raft §5.1, etcd-io/raft Step): newer terms win, older terms
 * are ignored or answered so the sender learns, pre-vote never changes terms.
 */

import assert from "node:assert/strict";
import { RaftNode } from "./node.ts";
import { testOptions } from "./_test_harness.ts";
import type { Message, RaftOptions, Ready } from "./types.ts";

function node(id: string, overrides: Partial<RaftOptions> = {}, term = 5): RaftNode {
  const raft = new RaftNode(testOptions(id, ["a", "b", "c"], overrides), {
    hardState: { term, vote: null, commit: 0 },
    snapshot: null,
    entries: [],
  });
  drain(raft);
  return raft;
}

function drain(raft: RaftNode): Ready {
  const ready = raft.ready();
  raft.advance();
  return ready;
}

function message(fields: Partial<Message> & Pick<Message, "type" | "term">): Message {
  return { from: "b", to: "a", ...fields };
}

Deno.test("term: a message from a newer leader makes us its follower (§5.1)", () => {
  const raft = node("a");
  raft.step(message({ type: "heartbeat", term: 7, commit: 0, context: "1" }));
  const status = raft.status();
  assert.equal(status.term, 7);
  assert.equal(status.leader, "b");
  const ready = drain(raft);
  assert.deepEqual(ready.hardState, { term: 7, vote: null, commit: 0 });
  assert.deepEqual(ready.messages.map((m) => [m.type, m.term, m.context]), [[
    "heartbeatResp",
    7,
    "1",
  ]]);
});

Deno.test("term: a stale append is answered with our term so the old leader steps down", () => {
  const raft = node("a", { preVote: true });
  raft.step(message({ type: "append", term: 3, index: 0, logTerm: 0, entries: [], commit: 0 }));
  assert.equal(raft.status().term, 5);
  const ready = drain(raft);
  assert.deepEqual(ready.messages.map((m) => [m.type, m.term, m.to]), [["appendResp", 5, "b"]]);
});

Deno.test("term: a stale vote request is ignored without pre-vote and check-quorum", () => {
  const raft = node("a");
  raft.step(message({ type: "vote", term: 3, index: 0, logTerm: 0 }));
  assert.equal(raft.hasReady(), false);
});

Deno.test("term: a pre-vote does not change our term; a granted pre-vote answers in the future term", () => {
  const raft = node("a", { preVote: true });
  raft.step(message({ type: "preVote", term: 6, index: 0, logTerm: 0 }));
  assert.equal(raft.status().term, 5);
  const ready = drain(raft);
  assert.equal(ready.hardState, undefined);
  assert.deepEqual(ready.messages.map((m) => [m.type, m.term, m.reject]), [[
    "preVoteResp",
    6,
    false,
  ]]);
});

Deno.test("term: a vote request with a newer term but an older log bumps the term and is refused (§5.4.1)", () => {
  const raft = new RaftNode(testOptions("a", ["a", "b", "c"]), {
    hardState: { term: 2, vote: null, commit: 1 },
    snapshot: null,
    entries: [{ index: 1, term: 2, kind: "noop", data: new Uint8Array() }],
  });
  drain(raft);
  raft.step(message({ type: "vote", term: 3, index: 5, logTerm: 1 }));
  const ready = drain(raft);
  assert.equal(raft.status().term, 3);
  assert.deepEqual(ready.hardState, { term: 3, vote: null, commit: 1 });
  assert.deepEqual(ready.messages.map((m) => [m.type, m.term, m.reject]), [["voteResp", 3, true]]);
});

Deno.test("term: a granted vote is in the hard state of the same Ready as its answer", () => {
  const raft = node("a");
  raft.step(message({ type: "vote", term: 6, index: 0, logTerm: 0 }));
  const ready = drain(raft);
  assert.deepEqual(ready.hardState, { term: 6, vote: "b", commit: 0 });
  assert.deepEqual(ready.messages.map((m) => [m.type, m.reject]), [["voteResp", false]]);
  // A second candidate in the same term is refused.
  raft.step({ ...message({ type: "vote", term: 6, index: 0, logTerm: 0 }), from: "c" });
  assert.deepEqual(drain(raft).messages.map((m) => [m.type, m.to, m.reject]), [[
    "voteResp",
    "c",
    true,
  ]]);
});

Deno.test("term: messages from unknown nodes or for another node are dropped", () => {
  const raft = node("a");
  raft.step({ ...message({ type: "heartbeat", term: 9 }), from: "z" });
  raft.step({ ...message({ type: "heartbeat", term: 9 }), to: "b" });
  assert.equal(raft.status().term, 5);
  assert.equal(raft.hasReady(), false);
});

Deno.test("performance: 50,000 proposals commit and apply without quadratic work", () => {
  const leader = new RaftNode(testOptions("a", ["a"], {}), {
    hardState: { term: 0, vote: null, commit: 0 },
    snapshot: null,
    entries: [],
  });
  drain(leader);
  const started = performance.now();
  const data = new Uint8Array(64);
  for (let k = 0; k < 50_000; k++) {
    assert.ok(leader.propose(data).ok);
    if (k % 100 === 99) {
      const ready = drain(leader);
      const last = ready.committedEntries[ready.committedEntries.length - 1];
      if (last !== undefined && last.index % 10_000 < 100) {
        leader.compact({
          meta: { index: last.index, term: last.term, voters: ["a"] },
          data: new Uint8Array(),
        });
      }
    }
  }
  drain(leader);
  const elapsedMs = performance.now() - started;
  assert.equal(leader.status().commit, 50_001);
  assert.ok(elapsedMs < 5_000, `50,000 proposals took ${elapsedMs.toFixed(0)} ms`);
});

Deno.test("append: a follower commits no further than the entries the append verified (§5.3)", () => {
  const noop = (index: number, term: number) => ({
    index,
    term,
    kind: "noop" as const,
    data: new Uint8Array(),
  });
  const raft = new RaftNode(testOptions("a", ["a", "b", "c"]), {
    hardState: { term: 1, vote: null, commit: 1 },
    snapshot: null,
    // Index 3 is a stale entry the new leader does not have.
    entries: [noop(1, 1), noop(2, 1), noop(3, 1)],
  });
  drain(raft);
  raft.step(
    message({ type: "append", term: 2, index: 1, logTerm: 1, entries: [noop(2, 1)], commit: 3 }),
  );
  assert.equal(raft.status().commit, 2);
  const ready = drain(raft);
  assert.deepEqual(ready.committedEntries.map((entry) => entry.index), [2]);
  assert.deepEqual(ready.messages.map((m) => [m.type, m.index]), [["appendResp", 2]]);
});
