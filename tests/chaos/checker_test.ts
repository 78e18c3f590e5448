/**
 * The checker on hand-made histories: a correct one passes, and each kind of violation is
 * caught (the checker is only worth something if it can fail).
 */
import assert from "node:assert/strict";
import { check, type CheckResult, parseFile, type ViolationKind } from "./checker.ts";
import { availability, gapStats, inFlightMs, mergeIntervals } from "./availability.ts";
import {
  type AppendPath,
  type HistoryEvent,
  type OpKind,
  type Outcome,
  pairOperations,
  parseHistory,
} from "./history.ts";

/** Builds histories tersely: one call per operation. */
class Builder {
  readonly events: HistoryEvent[] = [];
  readonly files = new Map<string, string>();
  #nextId = 0;

  op(
    process: string,
    op: OpKind,
    invokeMs: number,
    completeMs: number | null,
    outcome: Outcome,
    fields: {
      lock?: string;
      token?: number;
      record?: string;
      path?: AppendPath;
      leaseValid?: boolean;
    } = {},
  ): this {
    const opId = ++this.#nextId;
    const invoke: HistoryEvent = { type: "invoke", process, opId, op, timeMs: invokeMs };
    if (fields.lock !== undefined) invoke.lock = fields.lock;
    if (op !== "acquire" && fields.token !== undefined) invoke.token = fields.token;
    if (fields.leaseValid !== undefined) invoke.leaseValid = fields.leaseValid;
    if (fields.record !== undefined) {
      invoke.record = fields.record;
      invoke.file = `file-${fields.lock}`;
      invoke.path = fields.path ?? "service";
    }
    this.events.push(invoke);
    if (completeMs !== null) {
      const complete: HistoryEvent = { type: outcome, process, opId, op, timeMs: completeMs };
      if (op === "acquire" && outcome === "ok" && fields.token !== undefined) {
        complete.token = fields.token;
      }
      if (outcome !== "ok") complete.error = "Error: test";
      this.events.push(complete);
    }
    return this;
  }

  /** A whole critical section: acquire, appends of the given seqs, release. */
  section(
    process: string,
    lock: string,
    token: number,
    startMs: number,
    seqs: number[],
  ): this {
    let t = startMs;
    this.op(process, "acquire", t, t + 1, "ok", { lock, token });
    for (const seq of seqs) {
      t += 2;
      this.op(process, "append", t, t + 1, "ok", {
        lock,
        token,
        record: `${process}/${token}/${seq}`,
      });
    }
    t += 2;
    return this.op(process, "release", t, t + 1, "ok", { lock, token });
  }

  file(lock: string, lines: string[]): this {
    this.files.set(`file-${lock}`, lines.map((l) => l + "\n").join(""));
    return this;
  }

  run(): CheckResult {
    this.events.sort((a, b) => a.timeMs - b.timeMs);
    const lockOfFile = new Map([...this.files.keys()].map((f) => [f, f.slice("file-".length)]));
    return check({ events: this.events, files: this.files, lockOfFile, clockToleranceMs: 0 });
  }
}

function kinds(result: CheckResult): ViolationKind[] {
  return [...new Set(result.violations.map((v) => v.kind))].sort();
}

Deno.test("a correct history with two clients passes", () => {
  const result = new Builder()
    .section("w1", "a", 10, 0, [1, 2])
    .section("w2", "a", 20, 20, [1])
    .section("w1", "b", 21, 20, [3])
    .section("w1", "a", 30, 40, [4])
    .file("a", ["w1/10/1", "w1/10/2", "w2/20/1", "w1/30/4"])
    .file("b", ["w1/21/3"])
    .run();
  assert.deepEqual(result.violations, []);
  assert.equal(result.records, 5);
});

Deno.test("a stale token accepted after a higher one is a token-decrease", () => {
  const result = new Builder()
    .section("w1", "a", 10, 0, [1])
    .section("w2", "a", 20, 20, [1])
    // w1 wakes up (it was paused) and writes directly with its old token: acknowledged.
    .op("w1", "append", 40, 41, "ok", {
      lock: "a",
      token: 10,
      record: "w1/10/2",
      path: "direct",
    })
    .file("a", ["w1/10/1", "w2/20/1", "w1/10/2"])
    .run();
  assert.ok(kinds(result).includes("token-decrease"));
  assert.ok(kinds(result).includes("interleave"));
  assert.match(result.violations[0]?.message ?? "", /w1\/10\/2 \(token 10\) at line 3/);
});

Deno.test("two clients writing under one token is an interleave", () => {
  const result = new Builder()
    .section("w1", "a", 10, 0, [1])
    .section("w2", "a", 10, 0, [1])
    .file("a", ["w1/10/1", "w2/10/1"])
    .run();
  assert.ok(kinds(result).includes("interleave"));
  assert.ok(kinds(result).includes("duplicate-token"));
});

Deno.test("a late writer accepted before the next holder wrote is legal fencing", () => {
  // w1's lease expired while it was paused; w2 got token 20 but had not written yet when
  // w1's direct write with token 10 landed. Fencing allows that; the file is ordered.
  const result = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w2", "acquire", 2, 30, "ok", { lock: "a", token: 20 })
    .op("w1", "append", 40, 41, "ok", {
      lock: "a",
      token: 10,
      record: "w1/10/1",
      path: "direct",
    })
    .op("w2", "append", 50, 51, "ok", { lock: "a", token: 20, record: "w2/20/1" })
    .op("w1", "release", 60, 61, "fail", { lock: "a", token: 10 })
    .file("a", ["w1/10/1", "w2/20/1"])
    .run();
  assert.deepEqual(result.violations, []);
});

Deno.test("an acknowledged append that is missing is a lost-append", () => {
  const result = new Builder()
    .section("w1", "a", 10, 0, [1, 2])
    .file("a", ["w1/10/1"])
    .run();
  assert.deepEqual(kinds(result), ["lost-append"]);
  assert.match(result.violations[0]?.message ?? "", /w1\/10\/2 by w1 was acknowledged/);
});

Deno.test("a record present twice is a duplicate-append, also for unknown outcomes", () => {
  const acknowledged = new Builder()
    .section("w1", "a", 10, 0, [1])
    .file("a", ["w1/10/1", "w1/10/1"])
    .run();
  assert.deepEqual(kinds(acknowledged), ["duplicate-append"]);
  const unknown = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w1", "append", 2, 9, "info", { lock: "a", token: 10, record: "w1/10/1" })
    .file("a", ["w1/10/1", "w1/10/1"])
    .run();
  assert.deepEqual(kinds(unknown), ["duplicate-append"]);
});

Deno.test("unknown-outcome appends may be present once or absent", () => {
  const result = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w1", "append", 2, 9, "info", { lock: "a", token: 10, record: "w1/10/1" })
    .op("w1", "append", 10, null, "info", { lock: "a", token: 10, record: "w1/10/2" })
    .op("w1", "append", 12, 13, "info", { lock: "a", token: 10, record: "w1/10/3" })
    .file("a", ["w1/10/1", "w1/10/2"])
    .run();
  assert.deepEqual(result.violations, []);
});

Deno.test("a failed append that was applied is reported", () => {
  const result = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w1", "append", 2, 3, "fail", { lock: "a", token: 10, record: "w1/10/1" })
    .file("a", ["w1/10/1"])
    .run();
  assert.deepEqual(kinds(result), ["failed-append-applied"]);
});

Deno.test("a record nobody appended is a phantom-record", () => {
  const result = new Builder()
    .section("w1", "a", 10, 0, [1])
    .file("a", ["w1/10/1", "w1/10/7"])
    .run();
  assert.deepEqual(kinds(result), ["phantom-record"]);
});

Deno.test("garbage in a file is a corrupt-file", () => {
  const result = new Builder()
    .section("w1", "a", 10, 0, [1])
    .file("a", ["w1/10/1", "w1/1"])
    .run();
  assert.deepEqual(kinds(result), ["corrupt-file"]);
});

Deno.test("an append acknowledged before another began must come first", () => {
  const result = new Builder()
    .section("w1", "a", 10, 0, [1, 2])
    .file("a", ["w1/10/2", "w1/10/1"])
    .run();
  assert.deepEqual(kinds(result), ["append-order"]);
  // Overlapping appends may land in either order.
  const overlapping = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w1", "append", 2, 8, "ok", { lock: "a", token: 10, record: "w1/10/1" })
    .op("w1", "append", 3, 9, "ok", { lock: "a", token: 10, record: "w1/10/2" })
    .file("a", ["w1/10/2", "w1/10/1"])
    .run();
  assert.deepEqual(overlapping.violations, []);
});

Deno.test("a record whose token the client never got on that lock is reported", () => {
  const result = new Builder()
    .section("w1", "b", 10, 0, [1])
    .file("a", ["w1/10/1"])
    .run();
  assert.ok(kinds(result).includes("record-without-grant"));
  assert.ok(kinds(result).includes("phantom-record"));
});

Deno.test("a record appended after its grant was released is record-outside-hold", () => {
  const result = new Builder()
    .section("w1", "a", 10, 0, [1])
    .op("w1", "append", 20, 21, "ok", { lock: "a", token: 10, record: "w1/10/2" })
    .file("a", ["w1/10/1", "w1/10/2"])
    .run();
  assert.deepEqual(kinds(result), ["record-outside-hold"]);
  // While the release is unknown, the client possibly still holds: no violation.
  const unknownRelease = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w1", "release", 2, 3, "info", { lock: "a", token: 10 })
    .op("w1", "append", 20, 21, "ok", { lock: "a", token: 10, record: "w1/10/2" })
    .file("a", ["w1/10/2"])
    .run();
  assert.deepEqual(unknownRelease.violations, []);
});

Deno.test("a grant below an earlier completed grant on the lock is a grant-order", () => {
  const result = new Builder()
    .op("w1", "acquire", 0, 5, "ok", { lock: "a", token: 20 })
    .op("w1", "release", 6, 7, "ok", { lock: "a", token: 20 })
    .op("w2", "acquire", 8, 9, "ok", { lock: "a", token: 15 })
    .run();
  assert.deepEqual(kinds(result), ["grant-order"]);
  // Concurrent acquires may complete in any token order.
  const concurrent = new Builder()
    .op("w1", "acquire", 0, 9, "ok", { lock: "a", token: 20 })
    .op("w1", "release", 10, 11, "ok", { lock: "a", token: 20 })
    .op("w2", "acquire", 1, 5, "ok", { lock: "a", token: 15 })
    .run();
  assert.deepEqual(concurrent.violations, []);
});

Deno.test("tokens must also increase across locks", () => {
  const result = new Builder()
    .op("w1", "acquire", 0, 5, "ok", { lock: "a", token: 20 })
    .op("w2", "acquire", 8, 9, "ok", { lock: "b", token: 15 })
    .run();
  assert.deepEqual(kinds(result), ["global-token-order"]);
  const sameTokenTwoLocks = new Builder()
    .op("w1", "acquire", 0, 5, "ok", { lock: "a", token: 20 })
    .op("w2", "acquire", 1, 5, "ok", { lock: "b", token: 20 })
    .run();
  assert.deepEqual(kinds(sameTokenTwoLocks), ["duplicate-token"]);
});

Deno.test("a successful release after a higher grant completed is two-holders", () => {
  const result = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w2", "acquire", 2, 20, "ok", { lock: "a", token: 30 })
    .op("w1", "release", 25, 26, "ok", { lock: "a", token: 10 })
    .run();
  assert.deepEqual(kinds(result), ["two-holders"]);
  // A release that began before the other grant completed is fine.
  const racing = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w2", "acquire", 2, 20, "ok", { lock: "a", token: 30 })
    .op("w1", "release", 15, 26, "ok", { lock: "a", token: 10 })
    .run();
  assert.deepEqual(racing.violations, []);
});

Deno.test("a service append acknowledged for a replaced grant is a stale-holder-append", () => {
  const result = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w2", "acquire", 2, 20, "ok", { lock: "a", token: 30 })
    .op("w1", "append", 25, 26, "ok", { lock: "a", token: 10, record: "w1/10/1" })
    .file("a", ["w1/10/1"])
    .run();
  assert.deepEqual(kinds(result), ["stale-holder-append"]);
  // The same write sent directly to the filewriter is legal (only the fence guards it).
  const direct = new Builder()
    .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
    .op("w2", "acquire", 2, 20, "ok", { lock: "a", token: 30 })
    .op("w1", "append", 25, 26, "ok", {
      lock: "a",
      token: 10,
      record: "w1/10/1",
      path: "direct",
    })
    .file("a", ["w1/10/1"])
    .run();
  assert.deepEqual(direct.violations, []);
});

Deno.test("using a grant the library still reports held after another got it is lease-overlap", () => {
  const base = () =>
    new Builder()
      .op("w1", "acquire", 0, 1, "ok", { lock: "a", token: 10 })
      .op("w2", "acquire", 2, 20, "ok", { lock: "a", token: 30 });
  const overlap = base()
    .op("w1", "release", 25, 26, "fail", { lock: "a", token: 10, leaseValid: true })
    .run();
  assert.deepEqual(kinds(overlap), ["lease-overlap"]);
  // The library had already aborted the handle's signal: the worker was told.
  const told = base()
    .op("w1", "release", 25, 26, "fail", { lock: "a", token: 10, leaseValid: false })
    .run();
  assert.deepEqual(told.violations, []);
  // The worker was just resumed from a nemesis pause: exempt, also when it logged its
  // first step a moment before the nemesis logged the resume (seed 17).
  for (const resumedMs of [24, 26]) {
    const paused = base();
    paused.events.push(
      {
        type: "nemesis",
        process: "nemesis",
        timeMs: 3,
        faultId: 1,
        fault: "client-pause",
        phase: "start",
        target: "w1",
      },
      {
        type: "nemesis",
        process: "nemesis",
        timeMs: resumedMs,
        faultId: 1,
        fault: "client-pause",
        phase: "end",
        target: "w1",
      },
    );
    paused.op("w1", "release", 25, 26, "fail", { lock: "a", token: 10, leaseValid: true });
    assert.deepEqual(paused.run().violations, [], `resumed at ${resumedMs}`);
  }
  // Long after the resume the exemption is over.
  const late = base();
  late.events.push({
    type: "nemesis",
    process: "nemesis",
    timeMs: 24,
    faultId: 1,
    fault: "client-pause",
    phase: "end",
    target: "w1",
  });
  late.op("w1", "release", 5_000, 5_001, "fail", { lock: "a", token: 10, leaseValid: true });
  assert.deepEqual(kinds(late.run()), ["lease-overlap"]);
});

Deno.test("clock tolerance: an event only counts as earlier beyond the tolerance", () => {
  const builder = new Builder()
    .op("w1", "acquire", 0, 5, "ok", { lock: "a", token: 20 })
    .op("w2", "acquire", 7, 9, "ok", { lock: "a", token: 15 });
  const lockOfFile = new Map<string, string>();
  const strict = check({ events: builder.events, files: new Map(), lockOfFile });
  assert.deepEqual(kinds(strict), ["grant-order"]);
  const tolerant = check({
    events: builder.events,
    files: new Map(),
    lockOfFile,
    clockToleranceMs: 2,
  });
  assert.deepEqual(tolerant.violations, []);
});

Deno.test("parseFile splits records and garbage", () => {
  const { records, garbage } = parseFile("w1/10/1\nw2/11/2\nnonsense\n");
  assert.deepEqual(records.map((r) => [r.client, r.token, r.seq, r.line]), [
    ["w1", 10, 1, 0],
    ["w2", 11, 2, 1],
  ]);
  assert.equal(garbage.length, 1);
});

Deno.test("parseHistory drops a torn last line but not a torn middle line", () => {
  const good = '{"type":"phase","process":"harness","timeMs":1,"phase":"start"}';
  assert.equal(parseHistory(`${good}\n${good}\n{"type":"inv`, "h").length, 2);
  assert.throws(() => parseHistory(`${good}\n{"ty\n${good}\n`, "h"), /line 2 is not JSON/);
});

Deno.test("pairOperations marks operations without completion as info at Infinity", () => {
  const operations = pairOperations([
    { type: "invoke", process: "w1", opId: 1, op: "acquire", timeMs: 1, lock: "a" },
  ]);
  assert.equal(operations[0]?.outcome, "info");
  assert.equal(operations[0]?.completeMs, Infinity);
  assert.throws(
    () => pairOperations([{ type: "ok", process: "w1", opId: 1, op: "acquire", timeMs: 1 }]),
    /completes without an invocation/,
  );
});

Deno.test("availability: failover gaps, throughput windows and quiet liveness", () => {
  const builder = new Builder();
  builder.events.push(
    { type: "phase", process: "harness", timeMs: 0, phase: "start" },
    {
      type: "nemesis",
      process: "nemesis",
      timeMs: 1000,
      faultId: 1,
      fault: "kill",
      phase: "start",
      target: "s1",
      hitLeader: true,
    },
    {
      type: "nemesis",
      process: "nemesis",
      timeMs: 3000,
      faultId: 1,
      fault: "kill",
      phase: "end",
      target: "s1",
    },
    { type: "phase", process: "harness", timeMs: 5000, phase: "faults-end" },
    { type: "phase", process: "harness", timeMs: 5000, phase: "quiet-start" },
    { type: "phase", process: "harness", timeMs: 7000, phase: "end" },
  );
  builder
    .op("w1", "acquire", 500, 900, "ok", { lock: "a", token: 1 })
    // An in-flight response right after the kill does not count as recovery.
    .op("w2", "acquire", 900, 1000 + inFlightMs - 10, "ok", { lock: "b", token: 2 })
    .op("w1", "acquire", 1200, 1700, "ok", { lock: "c", token: 3 })
    .op("w1", "acquire", 5100, 5200, "ok", { lock: "c", token: 4 });
  builder.events.sort((a, b) => a.timeMs - b.timeMs);
  const result = availability(builder.events, pairOperations(builder.events));
  assert.deepEqual(result.gaps.map((g) => g.gapMs), [700]);
  assert.deepEqual(result.leaderKillGaps, { count: 1, medianMs: 700, maxMs: 700 });
  assert.equal(result.counts.acquire.ok, 4);
  assert.equal(result.acquiresOkQuiet, 1);
  assert.equal(result.quietFirstAcquireMs, 200);
  assert.equal(result.okPerSecondDuringFaults, 1); // 2 ok in the 2 s fault
  assert.equal(result.okPerSecondBetweenFaults, 1 / 3); // 1 ok in 3 s without faults
});

Deno.test("gapStats and mergeIntervals", () => {
  assert.deepEqual(gapStats([300, 100, 200, 900]), { count: 4, medianMs: 250, maxMs: 900 });
  assert.deepEqual(gapStats([]), { count: 0, medianMs: 0, maxMs: 0 });
  assert.deepEqual(
    mergeIntervals([{ startMs: 5, endMs: 8 }, { startMs: 0, endMs: 6 }, {
      startMs: 10,
      endMs: 11,
    }]),
    [{ startMs: 0, endMs: 8 }, { startMs: 10, endMs: 11 }],
  );
});
