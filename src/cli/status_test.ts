import assert from "node:assert/strict";
import type { MemberProbe, StatusResponse } from "../client/mod.ts";
import { formatStatus, fromLeader, withProbes } from "./status.ts";

const a = "127.0.0.1:17100";
const b = "127.0.0.1:17101";
const c = "127.0.0.1:17102";

function status(overrides: Partial<StatusResponse>): StatusResponse {
  return {
    self: a,
    role: "leader",
    leader: a,
    term: 3,
    commitIndex: 9,
    appliedIndex: 9,
    members: [],
    sessions: [{ id: 2, clientName: "hank", ttlMs: 10_000, held: 1, waiting: 0 }],
    locks: [{ name: "Q", holderSession: 2, holderName: "hank", token: 3, waiters: [] }],
    lockCount: 1,
    sessionCount: 1,
    filewriter: "",
    electionTimeoutMs: 300,
    ...overrides,
  };
}

function member(address: string, fields: Partial<StatusResponse["members"][number]> = {}) {
  return { address, isLeader: false, isSelf: false, ...fields };
}

const refused: MemberProbe = {
  address: c,
  status: null,
  problem: `cannot connect to ${c}: Connection refused (os error 111)`,
};

function row(text: string, address: string): string {
  const line = text.split("\n").find((l) => l.trim().startsWith(address + " "));
  assert.ok(line !== undefined, `a row for ${address} in:\n${text}`);
  return line.trim().replace(/\s+/, " ");
}

Deno.test("status: a dead member is shown as not answering, never as a follower", () => {
  const text = formatStatus(
    status({
      members: [
        member(a, { isLeader: true, isSelf: true }),
        member(b, { contactKnown: true, lastContactMsAgo: 40, matchIndex: 9 }),
        member(c, { contactKnown: true, lastContactMsAgo: 8_100, matchIndex: 7 }),
      ],
    }),
    [{ address: b, status: status({ self: b, role: "follower" }), problem: "" }, refused],
  );
  assert.equal(row(text, a), `${a} leader (answered)`);
  assert.equal(row(text, b), `${b} follower, last contact 0.0 s ago, match 9`);
  assert.equal(
    row(text, c),
    `${c} not answering (last contact 8.1 s ago, match 7): ${refused.problem}`,
  );
  assert.doesNotMatch(text, /may be out of date/, "the leader's own answer");
});

Deno.test("status: without a leader, the answering member's real role, and stale sessions and locks", () => {
  const answer = status({
    role: "preCandidate",
    leader: "",
    members: [member(a, { isSelf: true }), member(b), member(c)],
  });
  assert.equal(fromLeader(answer), false);
  const text = formatStatus(answer, [{ ...refused, address: b }, refused]);
  assert.match(text, /^leader \(none\) .*\(answered by 127\.0\.0\.1:17100, preCandidate\)$/m);
  assert.equal(row(text, a), `${a} preCandidate (answered)`);
  assert.match(row(text, b), /^\S+ not answering: cannot connect/);
  assert.match(row(text, c), /^\S+ not answering: cannot connect/);
  assert.doesNotMatch(text, /follower/);
  assert.match(
    text,
    /^SESSIONS \(1\) from 127\.0\.0\.1:17100, not the leader: may be out of date$/m,
  );
  assert.match(text, /^LOCKS \(1\) from 127\.0\.0\.1:17100, not the leader: may be out of date$/m);
});

Deno.test("status: members not asked get no role, unless the leader heard from them", () => {
  // The REPL's `status` shows the leader's answer alone (no probes).
  const fromFollower = formatStatus(status({
    self: b,
    role: "follower",
    members: [member(a, { isLeader: true }), member(b, { isSelf: true }), member(c)],
  }));
  assert.equal(row(fromFollower, c), `${c} role unknown (not asked)`);
  assert.equal(row(fromFollower, a), `${a} role unknown (not asked)`);
  const fromTheLeader = formatStatus(status({
    members: [
      member(a, { isLeader: true, isSelf: true }),
      member(b, { contactKnown: true, lastContactMsAgo: 20, matchIndex: 9 }),
      member(c, { contactKnown: false }),
    ],
  }));
  assert.equal(row(fromTheLeader, b), `${b} answering (last contact 0.0 s ago, match 9)`);
  assert.equal(row(fromTheLeader, c), `${c} not answering (the leader has not heard from it)`);
});

Deno.test("status --json: each other member carries its own answer or why it did not answer", () => {
  const json = JSON.parse(JSON.stringify(withProbes(
    status({
      members: [
        member(a, { isLeader: true, isSelf: true }),
        member(b, { contactKnown: true, lastContactMsAgo: 40, matchIndex: 9 }),
        member(c, { contactKnown: true, lastContactMsAgo: 8_100, matchIndex: 7 }),
      ],
    }),
    [
      { address: b, status: status({ self: b, role: "follower", leader: a }), problem: "" },
      refused,
    ],
  )));
  assert.equal(json.members[0].probe, undefined);
  assert.deepEqual(json.members[1].probe, {
    answered: true,
    role: "follower",
    term: 3,
    leader: a,
    commitIndex: 9,
  });
  assert.deepEqual(json.members[2].probe, { answered: false, problem: refused.problem });
  assert.equal(json.members[2].matchIndex, 7);
  assert.equal(json.locks[0].name, "Q");
});

Deno.test("status: a cut list of sessions says how many it shows", () => {
  const text = formatStatus(status({ sessionCount: 5, lockCount: 5 }));
  assert.match(text, /SESSIONS \(5\) \(showing 1\)/);
  assert.match(text, /LOCKS \(5\) \(showing 1\)/);
});
