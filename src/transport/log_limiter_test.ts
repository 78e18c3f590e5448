import assert from "node:assert/strict";
import { LogLimiter } from "./log_limiter.ts";

Deno.test("log limiter: one line per key per interval, with the count suppressed", () => {
  let nowMs = 0;
  const limiter = new LogLimiter({ intervalMs: 10_000, nowMs: () => nowMs });
  assert.deepEqual(limiter.due("a"), { suppressed: 0 });
  assert.equal(limiter.due("a"), null);
  nowMs = 9_999;
  assert.equal(limiter.due("a"), null);
  assert.deepEqual(limiter.due("b"), { suppressed: 0 }, "keys are independent");
  nowMs = 10_000;
  assert.deepEqual(limiter.due("a"), { suppressed: 2 });
  assert.equal(limiter.due("a"), null);
});

Deno.test("log limiter: remembers a bounded number of keys", () => {
  const limiter = new LogLimiter({ nowMs: () => 0 });
  for (let index = 0; index < 2_000; index++) assert.notEqual(limiter.due(`k${index}`), null);
  assert.notEqual(limiter.due("k0"), null, "the oldest keys were forgotten");
  assert.equal(limiter.due("k1999"), null, "the newest are remembered");
});
