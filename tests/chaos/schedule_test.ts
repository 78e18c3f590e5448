/** The fault schedule is a pure, bounded function of the seed. */
import assert from "node:assert/strict";
import {
  allFaultKinds,
  describeSchedule,
  makeSchedule,
  parseFaultList,
  type ScheduleOptions,
} from "./schedule.ts";
import { SeededRandom } from "./random.ts";

const options: ScheduleOptions = {
  seconds: 120,
  servers: 5,
  clients: 4,
  faults: allFaultKinds,
  sessionTtlMs: 3_000,
};

Deno.test("the same seed gives the same schedule, another seed another one", () => {
  assert.deepEqual(makeSchedule(7, options), makeSchedule(7, options));
  assert.notDeepEqual(makeSchedule(7, options), makeSchedule(8, options));
});

Deno.test("every fault is bounded and ends before the run does", () => {
  for (let seed = 1; seed <= 50; seed += 1) {
    const plan = makeSchedule(seed, options);
    assert.ok(plan.length > 5, `seed ${seed}: only ${plan.length} faults`);
    for (const fault of plan) {
      assert.ok(fault.atMs >= 1_000, `seed ${seed}: fault at ${fault.atMs}`);
      assert.ok(fault.durationMs > 0 && fault.durationMs <= 8_000 + options.sessionTtlMs);
      assert.ok(fault.atMs + fault.durationMs <= options.seconds * 1000 - 1_000);
      if (fault.kind === "client-pause") {
        assert.ok(fault.durationMs > options.sessionTtlMs, "a client pause outlives the TTL");
      }
      const [a, b] = fault.sides;
      assert.equal(a.length + b.length, options.servers);
      assert.ok(a.length > 0 && b.length > 0);
      assert.ok(fault.serverIndex >= 0 && fault.serverIndex < options.servers);
      assert.ok(fault.workerIndex >= 0 && fault.workerIndex < options.clients);
    }
    // Server faults do not overlap each other.
    const serverFaults = plan.filter((f) => f.kind !== "client-pause");
    for (let i = 1; i < serverFaults.length; i += 1) {
      const previous = serverFaults[i - 1]!;
      assert.ok(serverFaults[i]!.atMs >= previous.atMs + previous.durationMs);
    }
  }
});

Deno.test("a fault list restricts the kinds and all kinds appear over seeds", () => {
  const only = makeSchedule(3, { ...options, faults: ["kill", "client-pause"] });
  assert.ok(only.every((f) => f.kind === "kill" || f.kind === "client-pause"));
  const seen = new Set<string>();
  for (let seed = 1; seed <= 20; seed += 1) {
    for (const fault of makeSchedule(seed, options)) seen.add(fault.kind);
  }
  assert.deepEqual([...seen].sort(), [...allFaultKinds].sort());
  assert.deepEqual(makeSchedule(3, { ...options, faults: [] }), []);
  assert.equal(describeSchedule(only).length, only.length);
});

Deno.test("parseFaultList accepts kinds and all, and names a bad kind", () => {
  assert.deepEqual(parseFaultList("all"), [...allFaultKinds]);
  assert.deepEqual(parseFaultList("kill, pause"), ["kill", "pause"]);
  assert.throws(() => parseFaultList("kill,flood"), /'flood' is not a fault kind/);
});

Deno.test("SeededRandom is deterministic and roughly uniform", () => {
  const a = new SeededRandom(42);
  const b = new SeededRandom(42);
  const values = Array.from({ length: 1000 }, () => a.next());
  assert.deepEqual(values, Array.from({ length: 1000 }, () => b.next()));
  assert.ok(values.every((v) => v >= 0 && v < 1));
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
  const counts = [0, 0, 0];
  for (let i = 0; i < 3000; i += 1) counts[a.int(0, 2)]! += 1;
  assert.ok(counts.every((c) => c > 800), `counts ${counts}`);
});
